//! A listener that lets services answer a malformed `Content-Length`.
//!
//! hyper refuses a request whose `Content-Length` is not a number before any
//! service sees it, with an empty 400. OpenStack services answer such a
//! request with their own fault body (placement: "content-length header must
//! be an integer"). This wrapper looks at the head of the first request on
//! each connection and, when a `Content-Length` value is not a decimal
//! number, renames that header in place to [`MALFORMED_CONTENT_LENGTH`]
//! (same length, so nothing else moves). hyper then sees a request without a
//! body, and the service decides what to answer; it must close the
//! connection, since the client's body bytes follow.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The header a malformed `Content-Length` is renamed to (14 bytes, as
/// `content-length`).
pub const MALFORMED_CONTENT_LENGTH: &str = "x-malformed-cl";

pub struct GuardedListener(pub TcpListener);

impl axum::serve::Listener for GuardedListener {
    type Io = HeadGuard;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (
            HeadGuard {
                inner: stream,
                head: Some(Vec::new()),
                drained: 0,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Largest request head looked at; anything longer passes through as is.
const MAX_HEAD: usize = 16 * 1024;

/// A connection whose first request head is collected (up to the blank line,
/// [`MAX_HEAD`] or end of stream) and fixed up before the server reads it.
pub struct HeadGuard {
    inner: TcpStream,
    /// The collected head while collecting or handing it out; None after.
    head: Option<Vec<u8>>,
    drained: usize,
}

fn head_complete(data: &[u8]) -> bool {
    data.windows(4).any(|w| w == b"\r\n\r\n")
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(head) = this.head.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        // Collect until the head is complete, the limit is reached or EOF.
        while this.drained == 0 && !head_complete(head) && head.len() < MAX_HEAD {
            let mut chunk = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => break,
                Poll::Ready(Ok(())) => head.extend_from_slice(rb.filled()),
            }
        }
        if this.drained == 0 {
            rename_malformed_content_length(head);
        }
        let rest = &head[this.drained..];
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.drained += n;
        if this.drained == head.len() {
            this.head = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Renames each `Content-Length` header of the request head in `data` whose
/// value is not a decimal number.
fn rename_malformed_content_length(data: &mut [u8]) {
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    let mut start = match data[..head_end].iter().position(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => return,
    };
    while start < head_end {
        let end = data[start..head_end]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(head_end, |i| start + i);
        let line = &data[start..end];
        let name = b"content-length:";
        if line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
            let value = String::from_utf8_lossy(&line[name.len()..]);
            let value = value.trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                data[start..start + name.len() - 1]
                    .copy_from_slice(MALFORMED_CONTENT_LENGTH.as_bytes());
            }
        }
        start = end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_malformed_lengths() {
        let mut req =
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: hi mom\r\n\r\n{\"a\": 1}".to_vec();
        rename_malformed_content_length(&mut req);
        let text = String::from_utf8(req).unwrap();
        assert!(text.contains("x-malformed-cl: hi mom\r\n"), "{text}");
        let mut ok = b"POST /x HTTP/1.1\r\ncontent-length: 12\r\n\r\nContent-Length: x".to_vec();
        let orig = ok.clone();
        rename_malformed_content_length(&mut ok);
        assert_eq!(ok, orig, "valid lengths and body bytes are untouched");
    }
}
