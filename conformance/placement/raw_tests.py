"""Raw-socket replacements for gabbi tests that an HTTP client cannot send.

basic-http.yaml's last test, "bad content length not int", POSTs to
/resource_providers with the header ``Content-Length: hi mom`` and expects
placement itself to answer 400 with "content-length header must be an
integer" in the body. Upstream runs it in-process (wsgi-intercept), where the
header reaches the WSGI app verbatim; over a real socket gabbi's HTTP client
(httpx) replaces or refuses the bogus header, so the test cannot be sent as
written. run.py drops it from the gabbi suite and runs the equivalent check
below, with a hand-written request on a plain TCP socket, against the same
server and at the same point in the file's lifetime. It counts as one test
in the totals, under the gabbi name it replaces.

To the server the request looks exactly like upstream's in-process one:
same method, path, headers (the file's defaults plus the test's own) and
JSON body; the body is followed by a half-close so a server that waits for
more input sees EOF instead of hanging.
"""

import json
import socket
import urllib.parse


class RawCheckFailed(AssertionError):
    pass


def _http_exchange(base_url, request_bytes, timeout=30.0):
    parts = urllib.parse.urlsplit(base_url)
    sock = socket.create_connection((parts.hostname, parts.port or 80),
                                    timeout=timeout)
    try:
        sock.sendall(request_bytes)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    raw = b''.join(chunks)
    if not raw:
        raise RawCheckFailed('server closed the connection without any '
                             'response')
    head, _, body = raw.partition(b'\r\n\r\n')
    lines = head.decode('iso-8859-1').split('\r\n')
    status_line = lines[0]
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise RawCheckFailed('unparseable status line: %r' % status_line)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(':')
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def bad_content_length_not_int(base_url):
    """basic-http.yaml: "bad content length not int"."""
    prefix = urllib.parse.urlsplit(base_url).path.rstrip('/')
    netloc = urllib.parse.urlsplit(base_url).netloc
    body = json.dumps(
        {'uuid': 'ce13d7f1-9988-4dfd-8e16-ce071802eb36'}).encode()
    request = (
        'POST %s/resource_providers HTTP/1.1\r\n'
        'Host: %s\r\n'
        # basic-http.yaml defaults
        'x-auth-token: admin\r\n'
        'accept: application/json\r\n'
        # the test's own headers
        'content-type: application/json\r\n'
        'content-length: hi mom\r\n'
        'Connection: close\r\n'
        '\r\n' % (prefix, netloc)).encode('ascii') + body
    status, _headers, resp_body = _http_exchange(base_url, request)
    text = resp_body.decode('utf-8', 'replace')
    if status != 400:
        raise RawCheckFailed('expected status 400, got %d; body: %s'
                             % (status, text[:1000]))
    if 'content-length header must be an integer' not in text:
        raise RawCheckFailed(
            "response body lacks 'content-length header must be an "
            "integer': %s" % text[:1000])


# {yaml file name: [(name of the gabbi test replaced, check function)]}
# run.py removes each named test from the file's gabbi suite (failing
# loudly if it is no longer there) and runs the check after the file's
# gabbi tests, while the same server is still up.
REPLACEMENTS = {
    'basic-http.yaml': [
        ('bad content length not int', bad_content_length_not_int),
    ],
}
