//! SPDY/3.1 framing, the server's side of what `kubectl port-forward`
//! speaks (moby/spdystream on the client): frames are cut from a byte
//! stream that may arrive in any pieces; header blocks are zlib with the
//! SPDY/3 dictionary, one compression context per direction kept across
//! frames, each block ending in a sync flush. Only what a port-forward
//! server needs is written: SYN_REPLY, DATA, RST_STREAM, PING echoes and
//! GOAWAY. spdystream keeps no flow-control windows, so neither does this.
//!
//! ```text
//! control: 1|version 3 (15) | type (16) | flags (8) | length (24) | payload
//! data:    0|stream id (31)             | flags (8) | length (24) | data
//! ```

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The SPDY/3 header dictionary (adler32 0xe3c6a7c2).
pub const DICTIONARY: &[u8; 1423] = include_bytes!("spdy/dictionary.bin");

/// FIN on a DATA, SYN_STREAM or SYN_REPLY frame.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM's status for a stream refused or given up.
pub const CANCEL: u32 = 5;
pub const PROTOCOL_ERROR: u32 = 1;

/// A frame larger than this is hostile: kubectl sends at most 32 KiB of
/// data per frame and a few hundred bytes of headers.
const MAX_FRAME: usize = 1 << 20;
/// A header block may not inflate past this.
const MAX_HEADERS: usize = 64 * 1024;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A new stream and its headers (names lowercase, as on the wire).
    SynStream {
        id: u32,
        flags: u8,
        headers: Vec<(String, String)>,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway,
    Data {
        id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY and unknown control
    /// types: nothing for a port-forward server to do.
    Ignored,
}

/// Why the client's bytes are not SPDY/3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    #[error("a SPDY frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("a SPDY {0} frame is malformed")]
    Malformed(&'static str),
    #[error("a SPDY header block does not inflate: {0}")]
    Compression(String),
}

/// Cuts frames from the client's bytes; keeps the inflate context of its
/// header blocks.
pub struct Reader {
    buf: Vec<u8>,
    inflate: Decompress,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            buf: Vec::new(),
            inflate: Decompress::new(true),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl Reader {
    /// More bytes from the client.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if the bytes so far hold one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = (u32_at(&self.buf, 4).unwrap_or(0) & 0x00ff_ffff) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = self.buf.drain(..8 + len).collect();
        let head = u32_at(&frame, 0).unwrap_or(0);
        let flags = frame[4];
        let payload = &frame[8..];
        if head & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                id: head & 0x7fff_ffff,
                flags,
                data: payload.to_vec(),
            }));
        }
        let id_of = |what| {
            u32_at(payload, 0)
                .map(|v| v & 0x7fff_ffff)
                .ok_or(SpdyError::Malformed(what))
        };
        Ok(Some(match (head & 0xffff) as u16 {
            SYN_STREAM => {
                let id = id_of("SYN_STREAM")?;
                if payload.len() < 10 {
                    return Err(SpdyError::Malformed("SYN_STREAM"));
                }
                let block = self.inflate(&payload[10..])?;
                Frame::SynStream {
                    id,
                    flags,
                    headers: parse_headers(&block)?,
                }
            }
            // Their header blocks still move the shared inflate context.
            SYN_REPLY | HEADERS => {
                if payload.len() < 4 {
                    return Err(SpdyError::Malformed("HEADERS"));
                }
                self.inflate(&payload[4..])?;
                Frame::Ignored
            }
            RST_STREAM => Frame::RstStream {
                id: id_of("RST_STREAM")?,
                status: u32_at(payload, 4).ok_or(SpdyError::Malformed("RST_STREAM"))?,
            },
            PING => Frame::Ping(u32_at(payload, 0).ok_or(SpdyError::Malformed("PING"))?),
            GOAWAY => Frame::GoAway,
            SETTINGS | WINDOW_UPDATE => Frame::Ignored,
            _ => Frame::Ignored,
        }))
    }

    /// Inflates one header block, continuing the stream of the ones before.
    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() >= MAX_HEADERS {
                return Err(SpdyError::Compression("a header block over 64 KiB".into()));
            }
            out.reserve(1024);
            let before = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            if used == 0 && out.len() < out.capacity() && !input.is_empty() && r.is_ok() {
                return Err(SpdyError::Compression(
                    "the header block does not advance".into(),
                ));
            }
            match r {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
        }
    }
}

/// The name/value pairs of an inflated header block (32-bit lengths).
fn parse_headers(b: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let bad = SpdyError::Malformed("header block");
    let count = u32_at(b, 0).ok_or(bad.clone())? as usize;
    let mut at = 4;
    let take = |at: &mut usize| -> Result<String, SpdyError> {
        let n = u32_at(b, *at).ok_or(bad.clone())? as usize;
        let s = b.get(*at + 4..*at + 4 + n).ok_or(bad.clone())?;
        *at += 4 + n;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    let mut pairs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut at)?;
        let value = take(&mut at)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Builds the server's frames; keeps the deflate context of its header
/// blocks (so SYN_REPLYs must be sent in the order they are built).
pub struct Writer {
    deflate: Compress,
}

impl Default for Writer {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::best(), true);
        // Only fails for a stream already started.
        let _ = deflate.set_dictionary(DICTIONARY);
        Writer { deflate }
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8003_0000u32 | kind as u32).to_be_bytes());
    f.extend_from_slice(&((flags as u32) << 24 | payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl Writer {
    /// SYN_REPLY with no headers: the stream is accepted.
    pub fn syn_reply(&mut self, id: u32) -> Vec<u8> {
        let mut payload = (id & 0x7fff_ffff).to_be_bytes().to_vec();
        // An empty block: a count of zero, flushed.
        let mut input: &[u8] = &[0, 0, 0, 0];
        loop {
            payload.reserve(64);
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(input, &mut payload, FlushCompress::Sync);
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            if input.is_empty() && payload.len() < payload.capacity() {
                break;
            }
        }
        control(SYN_REPLY, 0, &payload)
    }
}

/// A DATA frame (empty with FIN: this side's end of the stream).
pub fn data(id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    let flags = if fin { FLAG_FIN } else { 0 };
    f.extend_from_slice(&((flags as u32) << 24 | data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// RST_STREAM: the stream is refused or given up.
pub fn rst(id: u32, status: u32) -> Vec<u8> {
    let mut p = (id & 0x7fff_ffff).to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &p)
}

/// PING, echoed with the client's id.
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// GOAWAY: no new streams (status 0: OK, 1: protocol error).
pub fn goaway(last_good: u32, status: u32) -> Vec<u8> {
    let mut p = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(GOAWAY, 0, &p)
}

#[cfg(test)]
mod tests;
