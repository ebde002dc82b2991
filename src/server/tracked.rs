//! A connection's stream that reports its writes' progress
//! ([`WriteProgress`]): every successful flush, and the first failure or the
//! close. Reads and writes pass straight through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::api::WriteProgress;

/// `S`, reporting to `progress`.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    progress: Arc<WriteProgress>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, progress: Arc<WriteProgress>) -> Self {
        Self { inner, progress }
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.progress.ended();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = &r {
            self.progress.ended();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Err(_)) = &r {
            self.progress.ended();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        match &r {
            Poll::Ready(Ok(())) => self.progress.flushed(),
            Poll::Ready(Err(_)) => self.progress.ended(),
            Poll::Pending => {}
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
