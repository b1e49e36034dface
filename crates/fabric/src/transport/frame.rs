//! Length-prefixed frames on QUIC streams: `u32 BE length ‖ bytes`.
//!
//! A frame longer than the configured maximum is refused *before* its body
//! is read, and a frame's buffer grows only as its bytes arrive, so a
//! hostile peer cannot make the node allocate what it declares without
//! sending it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one frame. Refuses to send a frame the peer would refuse.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    if bytes.len() > max {
        return Err(FrameError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(4 + bytes.len());
    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(bytes);
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut body = Vec::new();
    Ok(read_frame_into(r, max, &mut body).await?.then_some(body))
}

/// The first allocation for a frame's body; it doubles as bytes arrive.
const FIRST_CHUNK: usize = 16 * 1024;

/// Reads one frame into `body` (cleared first); false on a clean end of
/// stream between frames. The buffer holds at most twice what arrived.
pub async fn read_frame_into<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    body: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    body.clear();
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len <= FIRST_CHUNK {
        // Small: allocated at once (bounded), read exactly.
        body.resize(len, 0);
        r.read_exact(body).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
            _ => FrameError::Io(e),
        })?;
        return Ok(true);
    }
    body.reserve(FIRST_CHUNK);
    let read = (&mut *r).take(len as u64).read_to_end(body).await?;
    if read < len {
        return Err(FrameError::Truncated);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that declares 8 MiB and sends 10 bytes holds the reader's
    /// memory at what it sent, not at what it declared.
    #[tokio::test]
    async fn a_declared_length_is_not_allocated_before_it_arrives() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(8u32 << 20).to_be_bytes()).await.unwrap();
        a.write_all(&[7u8; 10]).await.unwrap();
        let mut body = Vec::new();
        let read = read_frame_into(&mut b, 8 << 20, &mut body);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), read).await;
        assert!(waited.is_err(), "the frame is not complete");
        assert_eq!(body.len(), 10);
        assert!(body.capacity() <= 2 * FIRST_CHUNK, "{}", body.capacity());
    }

    #[tokio::test]
    async fn round_trip_and_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, b"hello", 100).await.unwrap();
        write_frame(&mut a, b"", 100).await.unwrap();
        drop(a);
        assert_eq!(read_frame(&mut b, 100).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut b, 100).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut b, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversize_is_refused_before_reading_the_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 1 << 20).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut sink = tokio::io::sink();
        assert!(matches!(
            write_frame(&mut sink, &[0; 10], 5).await,
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, 100).await,
            Err(FrameError::Truncated)
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, 100).await,
            Err(FrameError::Truncated)
        ));
    }
}
