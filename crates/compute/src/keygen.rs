//! Key pairs: generation (RSA 2048 for ssh, a self-signed certificate for
//! x509), validation of imported public keys, and fingerprints as Nova
//! computes them (MD5 of the decoded ssh key blob, SHA-1 of the DER
//! certificate, both as colon-separated lowercase hex).

use base64::Engine;
use md5::{Digest as _, Md5};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use sha1::Sha1;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A freshly generated key pair.
#[derive(Debug, Clone)]
pub struct Generated {
    pub private_key: String,
    pub public_key: String,
    pub fingerprint: String,
}

/// Why a key was refused (the text after "Keypair data is invalid: ").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A reader of the SSH wire format (RFC 4251).
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.0.len() < 4 {
            return None;
        }
        let n = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]) as usize;
        let rest = &self.0[4..];
        if rest.len() < n {
            return None;
        }
        let (s, tail) = rest.split_at(n);
        self.0 = tail;
        Some(s)
    }

    /// A positive mpint, without its leading zero bytes.
    fn positive_mpint(&mut self) -> Option<&'a [u8]> {
        let s = self.string()?;
        if s.first().is_some_and(|b| b & 0x80 != 0) {
            return None;
        }
        let start = s.iter().position(|&b| b != 0).unwrap_or(s.len());
        Some(&s[start..])
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Compares two big-endian unsigned numbers without leading zeros.
fn cmp_be(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Checks that `blob` is a well-formed public key of type `kind`.
fn check_blob(kind: &str, blob: &[u8]) -> bool {
    let mut w = Wire(blob);
    let Some(inner) = w.string() else {
        return false;
    };
    if inner != kind.as_bytes() {
        return false;
    }
    let ok = match kind {
        "ssh-rsa" => {
            let (Some(e), Some(n)) = (w.positive_mpint(), w.positive_mpint()) else {
                return false;
            };
            // As pyca/cryptography: n >= 3, 3 <= e < n, e odd.
            cmp_be(n, &[3]).is_ge()
                && cmp_be(e, &[3]).is_ge()
                && cmp_be(e, n).is_lt()
                && e.last().is_some_and(|b| b & 1 == 1)
        }
        "ssh-dss" => (0..4).all(|_| w.positive_mpint().is_some_and(|v| !v.is_empty())),
        "ssh-ed25519" => w.string().is_some_and(|k| k.len() == 32),
        "sk-ssh-ed25519@openssh.com" => {
            w.string().is_some_and(|k| k.len() == 32) && w.string().is_some()
        }
        _ => {
            let (curve, sk) = match kind.strip_prefix("sk-ecdsa-sha2-") {
                Some(c) => (c.trim_end_matches("@openssh.com"), true),
                None => match kind.strip_prefix("ecdsa-sha2-") {
                    Some(c) => (c, false),
                    None => return false,
                },
            };
            let size = match curve {
                "nistp256" => 32,
                "nistp384" => 48,
                "nistp521" => 66,
                _ => return false,
            };
            if sk && curve != "nistp256" {
                return false;
            }
            let name_ok = w.string().is_some_and(|n| n == curve.as_bytes());
            let point_ok = w
                .string()
                .is_some_and(|p| p.len() == 1 + 2 * size && p[0] == 4);
            name_ok && point_ok && (!sk || w.string().is_some())
        }
    };
    ok && w.done()
}

/// Validates an OpenSSH public key line and returns its fingerprint as
/// Nova does: MD5 over the base64-decoded second space-separated field.
pub fn ssh_fingerprint(public_key: &str) -> Result<String, Invalid> {
    let invalid = || Invalid("failed to generate fingerprint".into());
    let line = public_key.trim_matches(|c: char| c == '\n' || c == '\r');
    let mut parts = line.split_ascii_whitespace();
    let (Some(kind), Some(body)) = (parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let blob = B64.decode(body).map_err(|_| invalid())?;
    if !check_blob(kind, &blob) {
        return Err(invalid());
    }
    // Nova hashes `public_key.split(' ')[1]`, literally.
    let field = public_key.split(' ').nth(1).unwrap_or_default();
    let data = B64.decode(field).map_err(|_| invalid())?;
    Ok(colon_hex(&Md5::digest(&data)))
}

/// A minimal DER reader: one TLV at a time.
fn der_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 & 0x80 == 0 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Checks the outline of a DER certificate: SEQUENCE { tbsCertificate
/// SEQUENCE { [0] version?, serial INTEGER, signature SEQUENCE, issuer
/// SEQUENCE, validity SEQUENCE, subject SEQUENCE, spki SEQUENCE, ... },
/// signatureAlgorithm SEQUENCE, signature BIT STRING }.
fn check_certificate(der: &[u8]) -> bool {
    let Some((0x30, cert, tail)) = der_tlv(der) else {
        return false;
    };
    if !tail.is_empty() {
        return false;
    }
    let Some((0x30, tbs, rest)) = der_tlv(cert) else {
        return false;
    };
    let Some((0x30, _, rest)) = der_tlv(rest) else {
        return false;
    };
    let Some((0x03, _, rest)) = der_tlv(rest) else {
        return false;
    };
    if !rest.is_empty() {
        return false;
    }
    let mut t = tbs;
    if let Some((0xa0, _, r)) = der_tlv(t) {
        t = r;
    }
    let Some((0x02, _, mut t)) = der_tlv(t) else {
        return false;
    };
    for _ in 0..5 {
        match der_tlv(t) {
            Some((0x30, _, r)) => t = r,
            _ => return false,
        }
    }
    true
}

/// Validates a PEM certificate and returns its fingerprint as Nova does:
/// SHA-1 over the DER encoding.
pub fn x509_fingerprint(pem: &str) -> Result<String, Invalid> {
    let invalid = |why: &str| {
        Invalid(format!(
            "failed to generate X509 fingerprint. Error message: {why}"
        ))
    };
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let unable = "Unable to load PEM file. See https://cryptography.io/en/latest/faq/#why-can-t-i-import-my-pem-file for more details.";
    let start = pem.find(BEGIN).ok_or_else(|| invalid(unable))? + BEGIN.len();
    let len = pem[start..].find(END).ok_or_else(|| invalid(unable))?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = B64.decode(body).map_err(|_| invalid(unable))?;
    if !check_certificate(&der) {
        return Err(invalid("error parsing asn1 value"));
    }
    Ok(colon_hex(&Sha1::digest(&der)))
}

fn ssh_mpint(out: &mut Vec<u8>, be: &[u8]) {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let v = &be[start..];
    let pad = v.first().is_some_and(|b| b & 0x80 != 0);
    let len = v.len() + usize::from(pad);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
}

fn rsa_key() -> Result<rsa::RsaPrivateKey, String> {
    rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| e.to_string())
}

/// Generates an ssh key pair as Nova does: RSA 2048, the private key in
/// PEM (PKCS#1, `BEGIN RSA PRIVATE KEY`), the public key as an OpenSSH
/// line with the comment `Generated-by-Nova`. CPU-bound: call it on the
/// blocking pool.
pub fn generate_ssh() -> Result<Generated, String> {
    let key = rsa_key()?;
    let private_key = key
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| e.to_string())?
        .to_string();
    let mut blob = Vec::with_capacity(300);
    blob.extend_from_slice(&7u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-rsa");
    ssh_mpint(&mut blob, &key.e().to_bytes_be());
    ssh_mpint(&mut blob, &key.n().to_bytes_be());
    let public_key = format!("ssh-rsa {} Generated-by-Nova", B64.encode(&blob));
    let fingerprint = colon_hex(&Md5::digest(&blob));
    Ok(Generated {
        private_key,
        public_key,
        fingerprint,
    })
}

/// Generates an x509 key pair as Nova's `generate_winrm_x509_cert`: an
/// RSA 2048 key and a self-signed certificate for `CN=<user_id>`, valid
/// for 3650 days, client authentication, with the UPN `<user_id>@localhost`
/// as a subject alternative name. The public key is the PEM certificate;
/// the private key is returned as PEM (PKCS#8).
pub fn generate_x509(user_id: &str) -> Result<Generated, String> {
    use chrono::Datelike;
    let key = rsa_key()?;
    let pkcs8 = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let signer = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, user_id);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.subject_alt_names = vec![rcgen::SanType::OtherName((
        vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
        rcgen::OtherNameValue::Utf8String(format!("{user_id}@localhost")),
    ))];
    let now = chrono::Utc::now();
    let later = now + chrono::Duration::days(3650);
    params.not_before = rcgen::date_time_ymd(now.year(), now.month() as u8, now.day() as u8);
    params.not_after = rcgen::date_time_ymd(later.year(), later.month() as u8, later.day() as u8);
    let mut serial = [0u8; 16];
    rand::Rng::fill(&mut rand::thread_rng(), &mut serial[..]);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&signer).map_err(|e| e.to_string())?;
    let fingerprint = colon_hex(&Sha1::digest(cert.der()));
    Ok(Generated {
        private_key: pkcs8.to_string(),
        public_key: cert.pem(),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys and certificates with the fingerprints `ssh-keygen -l -E md5`
    // and `openssl x509 -fingerprint -sha1` print for them.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBh76G689qSPA4P/iaDoHr8T0+6gvVjufdwbHa6mLSmQ test@example";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDFwKG7R62BmktNSDT281xJqQwsq/NORfPVXVtSBq7FZpZsc00HCcWCRJhVWtYkVk/Wu0+j3A241Jbdw+0rHHok3s+xcEZuATeli8GNO/HVfLGn82JVv3W0IJ3KTvfkkuPVHHyFZ+Wa/uI31OjHKgrLyv9oJ+nSG+7Jd9eXSZvAU26JbsoOKJptLFzP3I7648fIkVVy3vYhWJO7n9fTxfbGj/bF10uAxs0Dej1Cpi/rOf6imIr/xEdzAWJjReV33EDIfNRyvlnV/amQyKAA567bksR/neLZn3R2CBXSVd8LFUpbnMfeF+plCTQ0k0Yy3asbJk5TNLS8ipS22i2oDJZx rsa@example";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIC/zCCAeegAwIBAgIUREDJtIhVEY02nYcUll2EsS7AwbAwDQYJKoZIhvcNAQEL\nBQAwDzENMAsGA1UEAwwEdGVzdDAeFw0yNjExMjYwODIyMzRaFw0zNjExMjMwODIy\nMzRaMA8xDTALBgNVBAMMBHRlc3QwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK\nAoIBAQC1NolmggP3qpapxbSpes4ZbpE0MU8LrzNMIS7Wly5EEbq1488W/wAApMjD\nm0sI4hX11/1zHX42vaMbvTJyyaY/4vU3aNkjkNlYUm5ZfH+G6AzOUWo/K6P23d/c\nIlGQNx/JCF2FUCmuw8TQ/AWYXEgFveCZcFyhB1CRsjSDP799yGFRIv9m2Rji/cz8\nl74cAsZjyzuQmYVm0L+opIWyJjjEgeeCdMirieBuHDzRkHFuPFd+s4GyQ7bzngab\nH/hGkbcS6GBbm+Wjm/0SXZ8NfXQ8/0GveUxayP0PBKjHcCaVSRUK0BFMdvqhIH92\nrV9OcvaPaSZpa/clvkNY72HLdE5bAgMBAAGjUzBRMB0GA1UdDgQWBBTvMuLrIEWy\nhUr6u8SfZnH2B/Q8UzAfBgNVHSMEGDAWgBTvMuLrIEWyhUr6u8SfZnH2B/Q8UzAP\nBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQBRQFphJUd+3dpTVHFV\nXlLyFkKIzbVzTNhYyECPw/3Fin4VivIlRSfeL/639G/3DhidTLeZXubAHcFW2SUS\nRmMx9nygE7Q3GMVBwNKfIOpC1u9HqHGtqaAVs8ExAlX9n2QtaYZ3Fnw7+s2JrxSE\nRFl2azJgOGQXohMkdwlWtn/6FVjC+Xv64q4L5oX6ere3KCei8lyJp1738cCx/yjj\n4kT47Q3VrtR7+7QDrAkKbui+nqAGUKIHar2MklviGloOlVvS6WUj6Rzvv6PSkuQk\nq5gwxlr36bPDUBGbekRI06wVP0Xd+BWR2QtvUgASlfrElFZ3T2CtASXuvoDC71Ev\n8pKj\n-----END CERTIFICATE-----\n";

    #[test]
    fn fingerprints_match_openssh_and_openssl() {
        assert_eq!(
            ssh_fingerprint(ED25519).unwrap(),
            "60:d0:b7:b9:7e:77:f6:a4:a0:e3:c6:d4:38:2e:a4:8f"
        );
        assert_eq!(
            ssh_fingerprint(RSA).unwrap(),
            "3d:6e:9e:09:5b:bb:97:9e:ed:95:97:84:56:a5:9b:7a"
        );
        // Text around the PEM block is ignored, as pyca/cryptography does.
        let wrapped = format!("subject=CN = test\n{CERT}trailing\n");
        for pem in [CERT, wrapped.as_str()] {
            assert_eq!(
                x509_fingerprint(pem).unwrap(),
                "29:33:a8:26:57:74:37:10:aa:78:d9:f2:da:0c:9c:93:af:b2:32:e0"
            );
        }
    }

    #[test]
    fn bad_ssh_keys_are_refused() {
        let bad = Invalid("failed to generate fingerprint".into());
        for k in [
            "",
            "ssh-rsa",
            "ssh-rsa not-base64!!",
            "ssh-rsa AAAA",
            // The inner type differs from the outer one.
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            // Truncated key.
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9",
            "bogus",
        ] {
            assert_eq!(ssh_fingerprint(k), Err(bad.clone()), "{k:?}");
        }
    }

    #[test]
    fn generated_ssh_keys_round_trip() {
        let g = generate_ssh().unwrap();
        assert!(g
            .private_key
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(g.public_key.starts_with("ssh-rsa AAAAB3NzaC1yc2E"));
        assert!(g.public_key.ends_with(" Generated-by-Nova"));
        assert_eq!(ssh_fingerprint(&g.public_key).unwrap(), g.fingerprint);
    }

    #[test]
    fn generated_certificates_round_trip() {
        let g = generate_x509("0123abcd").unwrap();
        assert!(g.public_key.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(x509_fingerprint(&g.public_key).unwrap(), g.fingerprint);
        assert_eq!(g.fingerprint.len(), 59);
        // SHA-1 of the DER, independently.
        let body: String = g
            .public_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = B64.decode(body).unwrap();
        assert_eq!(g.fingerprint, colon_hex(&Sha1::digest(&der)));
    }

    #[test]
    fn bad_certificates_are_refused() {
        for pem in [
            "",
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        ] {
            let e = x509_fingerprint(pem).unwrap_err();
            assert!(
                e.0.starts_with("failed to generate X509 fingerprint. Error message: "),
                "{e:?}"
            );
        }
    }
}
