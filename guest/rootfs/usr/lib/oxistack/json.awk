# Flatten a JSON document into one "path<TAB>value" line per scalar.
#
# Paths join object keys and array indices with ".", e.g.
#   {"hostname":"vm1","public_keys":{"k1":"ssh-ed25519 AAAA..."},
#    "links":[{"mtu":1450}]}
# becomes
#   hostname          vm1
#   public_keys.k1    ssh-ed25519 AAAA...
#   links.0.mtu       1450
#
# Strings are unescaped (\" \\ \/ \uXXXX; \n \r \t become a space so every
# value stays on one line); numbers, true, false and null are printed as
# written. Empty objects and arrays print nothing. Written for busybox awk
# (no gawk extensions); handles the single-line JSON that Nova writes as well
# as pretty-printed JSON.

function hexval(h,    i, c, v) {
    v = 0
    h = tolower(h)
    for (i = 1; i <= length(h); i++) {
        c = index("0123456789abcdef", substr(h, i, 1))
        if (c == 0) return -1
        v = v * 16 + c - 1
    }
    return v
}

function utf8(cp) {
    if (cp < 0) return "?"
    if (cp < 128) return sprintf("%c", cp)
    if (cp < 2048)
        return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
    return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
}

# Read the string starting at s[pos] (a double quote); leaves pos after the
# closing quote and returns the unescaped text.
function readstr(    out, c, rest) {
    pos++
    out = ""
    while (pos <= n) {
        rest = substr(s, pos)
        if (match(rest, /^[^"\\]+/)) {
            out = out substr(rest, 1, RLENGTH)
            pos += RLENGTH
            continue
        }
        c = substr(s, pos, 1)
        if (c == "\"") { pos++; return out }
        # backslash escape
        c = substr(s, pos + 1, 1)
        if (c == "n" || c == "r" || c == "t") out = out " "
        else if (c == "b" || c == "f") out = out ""
        else if (c == "u") { out = out utf8(hexval(substr(s, pos + 2, 4))); pos += 4 }
        else out = out c
        pos += 2
    }
    return out
}

function join(a, b) { return a == "" ? b : a "." b }

function curpath() {
    if (depth == 0) return ""
    if (typ[depth] == "o") return join(pre[depth], key[depth])
    return join(pre[depth], idx[depth])
}

function emit(p, v) { printf "%s\t%s\n", p, v }

{ s = s $0 "\n" }

END {
    n = length(s)
    pos = 1
    depth = 0
    while (pos <= n) {
        c = substr(s, pos, 1)
        if (c == " " || c == "\t" || c == "\n" || c == "\r" || c == ":") { pos++; continue }
        if (c == "{" || c == "[") {
            p = curpath()
            depth++
            typ[depth] = (c == "{") ? "o" : "a"
            pre[depth] = p
            idx[depth] = 0
            key[depth] = ""
            wantkey[depth] = (c == "{")
            pos++
            continue
        }
        if (c == "}" || c == "]") { if (depth > 0) depth--; pos++; continue }
        if (c == ",") {
            if (depth > 0) {
                if (typ[depth] == "a") idx[depth]++
                else wantkey[depth] = 1
            }
            pos++
            continue
        }
        if (c == "\"") {
            v = readstr()
            if (depth > 0 && typ[depth] == "o" && wantkey[depth]) {
                key[depth] = v
                wantkey[depth] = 0
            } else {
                emit(curpath(), v)
            }
            continue
        }
        rest = substr(s, pos)
        if (match(rest, /^[-+0-9.eEa-zA-Z]+/)) {
            emit(curpath(), substr(rest, 1, RLENGTH))
            pos += RLENGTH
            continue
        }
        pos++   # anything else: skip it
    }
}
