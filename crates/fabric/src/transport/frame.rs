//! Length-prefixed frames on QUIC streams: `u32 BE length ‖ bytes`.
//!
//! A frame longer than the configured maximum is refused *before* its body
//! is read, so a hostile peer cannot make the node allocate it.

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
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
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
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

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
