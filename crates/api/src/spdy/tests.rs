//! Tests of the SPDY/3.1 codec: frames cut byte by byte, header blocks
//! from another zlib, and seeded random bytes that must never panic.

use super::*;

fn adler32(b: &[u8]) -> u32 {
    let (mut a, mut s) = (1u32, 0u32);
    for &x in b {
        a = (a + x as u32) % 65521;
        s = (s + a) % 65521;
    }
    s << 16 | a
}

/// What spdystream sends: a header block through one long-lived zlib
/// stream with the dictionary, flushed per frame.
struct ClientHeaders(Compress);

impl ClientHeaders {
    fn new() -> Self {
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(DICTIONARY).unwrap();
        ClientHeaders(c)
    }

    fn block(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = (pairs.len() as u32).to_be_bytes().to_vec();
        for (n, v) in pairs {
            for s in [n, v] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        self.0
            .compress_vec(&raw, &mut out, FlushCompress::Sync)
            .unwrap();
        out
    }

    fn syn_stream(&mut self, id: u32, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&self.block(pairs));
        control(SYN_STREAM, 0, &p)
    }
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn the_dictionary_is_spdy3s() {
    assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
}

#[test]
fn header_blocks_made_by_another_zlib_inflate_across_frames() {
    // Python's zlib (level 9, the SPDY/3 dictionary): the error stream's
    // headers, then the data stream's in the same zlib stream.
    let first = hex::decode("78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff").unwrap();
    let second = hex::decode("c2aa19540e2512d60b000000ffff").unwrap();
    let mut r = Reader::default();
    for (id, block, kind) in [(1u32, first, "error"), (3, second, "data")] {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&block);
        r.push(&control(SYN_STREAM, 0, &p));
        let Some(Frame::SynStream {
            id: got, headers, ..
        }) = r.next_frame().unwrap()
        else {
            panic!("no SYN_STREAM");
        };
        assert_eq!(got, id);
        let mut headers = headers;
        headers.sort();
        assert_eq!(
            headers,
            pairs(&[("port", "8080"), ("requestid", "0"), ("streamtype", kind)])
        );
    }
}

#[test]
fn frames_are_cut_from_bytes_in_any_pieces() {
    let mut c = ClientHeaders::new();
    let mut wire = c.syn_stream(1, &[("streamtype", "data"), ("port", "80")]);
    wire.extend(data(1, false, b"hello"));
    wire.extend(ping(7));
    wire.extend(data(1, true, b""));
    wire.extend(rst(1, CANCEL));
    wire.extend(control(WINDOW_UPDATE, 0, &[0, 0, 0, 1, 0, 0, 1, 0]));
    wire.extend(goaway(0, 0));
    // One byte at a time: nothing until a frame is whole.
    let mut r = Reader::default();
    let mut frames = Vec::new();
    for b in &wire {
        r.push(std::slice::from_ref(b));
        while let Some(f) = r.next_frame().unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(
        frames,
        vec![
            Frame::SynStream {
                id: 1,
                flags: 0,
                headers: pairs(&[("streamtype", "data"), ("port", "80")])
            },
            Frame::Data {
                id: 1,
                flags: 0,
                data: b"hello".to_vec()
            },
            Frame::Ping(7),
            Frame::Data {
                id: 1,
                flags: FLAG_FIN,
                data: vec![]
            },
            Frame::RstStream {
                id: 1,
                status: CANCEL
            },
            Frame::Ignored,
            Frame::GoAway,
        ]
    );
}

#[test]
fn replies_inflate_with_the_dictionary_in_one_stream() {
    let mut w = Writer::default();
    let mut inflate = Decompress::new(true);
    for id in [1u32, 3, 5] {
        let f = w.syn_reply(id);
        assert_eq!(&f[..4], &[0x80, 0x03, 0x00, 0x02]);
        assert_eq!(u32_at(&f, 4).unwrap() as usize, f.len() - 8);
        assert_eq!(u32_at(&f, 8).unwrap(), id);
        let block = &f[12..];
        assert_eq!(
            &block[block.len() - 4..],
            &[0, 0, 0xff, 0xff],
            "a sync flush"
        );
        let mut out = Vec::with_capacity(64);
        let mut input = block;
        loop {
            let before = inflate.total_in();
            match inflate.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Err(e) if e.needs_dictionary().is_some() => {
                    inflate.set_dictionary(DICTIONARY).unwrap();
                }
                r => {
                    r.unwrap();
                }
            }
            input = &input[(inflate.total_in() - before) as usize..];
            if input.is_empty() {
                break;
            }
        }
        assert_eq!(out, [0, 0, 0, 0], "an empty header block");
    }
}

#[test]
fn hostile_bytes_are_errors_not_panics() {
    // Too large.
    let mut r = Reader::default();
    r.push(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]);
    assert!(matches!(r.next_frame(), Err(SpdyError::TooLarge(_))));
    // A header block that is not zlib.
    let mut r = Reader::default();
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(b"not zlib at all");
    r.push(&control(SYN_STREAM, 0, &p));
    assert!(matches!(r.next_frame(), Err(SpdyError::Compression(_))));
    // Short control payloads.
    for kind in [SYN_STREAM, RST_STREAM, PING, HEADERS] {
        let mut r = Reader::default();
        r.push(&control(kind, 0, &[0, 0]));
        assert!(r.next_frame().is_err(), "type {kind}");
    }
    // A header block whose counts run past its end.
    let mut c = ClientHeaders::new();
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&[0; 6]);
    let mut raw = 5u32.to_be_bytes().to_vec();
    raw.extend_from_slice(&100u32.to_be_bytes());
    let mut block = Vec::with_capacity(128);
    c.0.compress_vec(&raw, &mut block, FlushCompress::Sync)
        .unwrap();
    p.extend_from_slice(&block);
    let mut r = Reader::default();
    r.push(&control(SYN_STREAM, 0, &p));
    assert_eq!(r.next_frame(), Err(SpdyError::Malformed("header block")));
    // Random bytes, seeded: never a panic.
    let seed = shoal_fabric::testing::seed();
    let mut x = seed | 1;
    for _ in 0..2_000 {
        let mut r = Reader::default();
        let n = (x % 64) as usize + 8;
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.push(x as u8);
        }
        // Mostly control frames of SPDY/3 with small lengths.
        b[0] = 0x80 | (b[0] & 1);
        b[1] = 3;
        b[5] = 0;
        b[6] = 0;
        r.push(&b);
        while let Ok(Some(_)) = r.next_frame() {}
    }
}
