//! RouterOS API wire format: length-prefixed words, sentences ending in an empty word, commands
//! (path, `=attribute=value` words, `?query` words, `.tag`) and replies (`!re`, `!done`, `!trap`,
//! `!fatal`, `!empty`). Sans-IO: the client and the simulator feed bytes in and take bytes out.

use std::fmt;

/// Longest word we accept from a peer: a router's longest answers (scripts, certificates) are far
/// below this; anything larger is a broken or hostile peer and must not grow our buffers.
pub const MAX_WORD: usize = 1 << 20;
/// Most words in one sentence we accept (a `/ppp/active` row has about a dozen).
pub const MAX_WORDS: usize = 4096;

/// Malformed bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first byte of a length is a control byte (0xF8..=0xFF), which RouterOS never sends.
    #[error("invalid word length prefix 0x{0:02x}")]
    BadPrefix(u8),
    /// A word longer than [`MAX_WORD`].
    #[error("word of {0} bytes is longer than the {MAX_WORD}-byte limit")]
    WordTooLong(u64),
    /// A sentence with more than [`MAX_WORDS`] words.
    #[error("sentence has more than {MAX_WORDS} words")]
    TooManyWords,
    /// A word cannot be encoded (longer than 2^32 - 1 bytes).
    #[error("word of {0} bytes cannot be encoded")]
    Unencodable(usize),
}

/// Appends the length prefix of a word of `len` bytes.
///
/// # Errors
/// [`WireError::Unencodable`] above `u32::MAX`.
pub fn encode_len(len: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let n = u32::try_from(len).map_err(|_| WireError::Unencodable(len))?;
    let b = n.to_be_bytes();
    match n {
        0..0x80 => out.push(b[3]),
        0x80..0x4000 => out.extend_from_slice(&(n | 0x8000).to_be_bytes()[2..]),
        0x4000..0x20_0000 => out.extend_from_slice(&(n | 0xC0_0000).to_be_bytes()[1..]),
        0x20_0000..0x1000_0000 => out.extend_from_slice(&(n | 0xE000_0000).to_be_bytes()),
        _ => {
            out.push(0xF0);
            out.extend_from_slice(&b);
        }
    }
    Ok(())
}

/// Decodes a length prefix at the start of `buf`: `Ok(None)` when more bytes are needed, else
/// the length and how many bytes the prefix took.
///
/// # Errors
/// [`WireError::BadPrefix`] for a control byte.
pub fn decode_len(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (size, mask): (usize, u8) = match first {
        0x00..=0x7F => (1, 0x7F),
        0x80..=0xBF => (2, 0x3F),
        0xC0..=0xDF => (3, 0x1F),
        0xE0..=0xEF => (4, 0x0F),
        0xF0 => (5, 0x00),
        b => return Err(WireError::BadPrefix(b)),
    };
    let Some(bytes) = buf.get(..size) else {
        return Ok(None);
    };
    let mut n = u64::from(first & mask);
    for &b in &bytes[1..] {
        n = (n << 8) | u64::from(b);
    }
    Ok(Some((n, size)))
}

/// Appends one word.
///
/// # Errors
/// [`WireError::Unencodable`] for a word longer than `u32::MAX`.
pub fn encode_word(word: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    encode_len(word.len(), out)?;
    out.extend_from_slice(word);
    Ok(())
}

/// A sentence: words without the terminating empty word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sentence(pub Vec<String>);

impl Sentence {
    /// The sentence's bytes, ending with the empty word.
    ///
    /// # Errors
    /// [`WireError::Unencodable`] for a word longer than `u32::MAX`.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(self.0.iter().map(|w| w.len() + 2).sum::<usize>() + 1);
        for w in &self.0 {
            encode_word(w.as_bytes(), &mut out)?;
        }
        out.push(0);
        Ok(out)
    }

    /// Decodes one sentence from the start of `buf`: `Ok(None)` when it is not complete yet, else
    /// the sentence and the bytes it took. Words that are not UTF-8 are decoded lossily (routers
    /// may hold Latin-1 comments; we never need them byte-exact).
    ///
    /// # Errors
    /// A bad prefix, an over-long word or too many words: the stream cannot be resynchronised,
    /// so the connection must be dropped.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
        let mut at = 0;
        let mut words = Vec::new();
        loop {
            let Some((len, size)) = decode_len(&buf[at..])? else {
                return Ok(None);
            };
            if len > MAX_WORD as u64 {
                return Err(WireError::WordTooLong(len));
            }
            // Bounded by MAX_WORD above, so it fits in usize.
            let len = len as usize;
            at += size;
            if len == 0 {
                return Ok(Some((Self(words), at)));
            }
            let Some(word) = buf.get(at..at + len) else {
                return Ok(None);
            };
            if words.len() >= MAX_WORDS {
                return Err(WireError::TooManyWords);
            }
            words.push(String::from_utf8_lossy(word).into_owned());
            at += len;
        }
    }
}

/// A command: path, attributes, queries and an optional tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// Command path, e.g. `/ppp/active/print`.
    pub path: String,
    /// `=name=value` words.
    pub attrs: Vec<(String, String)>,
    /// `?query` words, without the `?`.
    pub queries: Vec<String>,
    /// `.tag` for matching replies on a shared connection.
    pub tag: Option<String>,
}

impl Command {
    /// A command with no arguments.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Adds `=name=value`.
    #[must_use]
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.push((name.into(), value.into()));
        self
    }

    /// Adds a query word, e.g. `name=alice` for `?name=alice`, or `#|` for an operator.
    #[must_use]
    pub fn query(mut self, q: impl Into<String>) -> Self {
        self.queries.push(q.into());
        self
    }

    /// Restricts a print to these properties (`=.proplist=a,b`).
    #[must_use]
    pub fn proplist(self, props: &[&str]) -> Self {
        self.attr(".proplist", props.join(","))
    }

    /// The command as a sentence.
    pub fn sentence(&self) -> Sentence {
        let mut w = Vec::with_capacity(1 + self.attrs.len() + self.queries.len() + 1);
        w.push(self.path.clone());
        w.extend(self.attrs.iter().map(|(k, v)| format!("={k}={v}")));
        w.extend(self.queries.iter().map(|q| format!("?{q}")));
        if let Some(t) = &self.tag {
            w.push(format!(".tag={t}"));
        }
        Sentence(w)
    }

    /// Parses a command sentence (the simulator's side).
    pub fn parse(s: &Sentence) -> Option<Self> {
        let (path, rest) = s.0.split_first()?;
        let mut cmd = Self::new(path.clone());
        for w in rest {
            if let Some(a) = w.strip_prefix('=') {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                cmd.attrs.push((k.to_owned(), v.to_owned()));
            } else if let Some(q) = w.strip_prefix('?') {
                cmd.queries.push(q.to_owned());
            } else if let Some(t) = w.strip_prefix(".tag=") {
                cmd.tag = Some(t.to_owned());
            }
            // Other API words (e.g. `.id` without `=`) are ignored, as RouterOS does.
        }
        Some(cmd)
    }

    /// The value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Kind of a reply sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `!re`: one row of data.
    Re,
    /// `!done`: the command finished (may carry `=ret=`).
    Done,
    /// `!trap`: the command failed (followed by `!done`).
    Trap,
    /// `!fatal`: the router closes the connection.
    Fatal,
    /// `!empty`: nothing to print (RouterOS 7.18+; followed by `!done`).
    Empty,
}

impl ReplyKind {
    /// The reply word.
    pub fn word(self) -> &'static str {
        match self {
            Self::Re => "!re",
            Self::Done => "!done",
            Self::Trap => "!trap",
            Self::Fatal => "!fatal",
            Self::Empty => "!empty",
        }
    }
}

impl fmt::Display for ReplyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A reply sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Which reply.
    pub kind: ReplyKind,
    /// The command's tag, if it had one.
    pub tag: Option<String>,
    /// `=name=value` attributes in order.
    pub attrs: Vec<(String, String)>,
    /// Other words (a `!fatal` reason comes as a bare word).
    pub other: Vec<String>,
}

/// A reply that is not one of the five kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply word {0:?}")]
pub struct UnknownReply(pub String);

impl Reply {
    /// A reply of `kind` with no words.
    pub fn new(kind: ReplyKind) -> Self {
        Self {
            kind,
            tag: None,
            attrs: Vec::new(),
            other: Vec::new(),
        }
    }

    /// Adds `=name=value`.
    #[must_use]
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attrs.push((name.into(), value.into()));
        self
    }

    /// Sets the tag.
    #[must_use]
    pub fn tagged(mut self, tag: Option<String>) -> Self {
        self.tag = tag;
        self
    }

    /// Interprets a sentence as a reply.
    ///
    /// # Errors
    /// [`UnknownReply`] when the first word is not a reply word (or the sentence is empty).
    pub fn parse(s: Sentence) -> Result<Self, UnknownReply> {
        let mut words = s.0.into_iter();
        let first = words.next().unwrap_or_default();
        let kind = match first.as_str() {
            "!re" => ReplyKind::Re,
            "!done" => ReplyKind::Done,
            "!trap" => ReplyKind::Trap,
            "!fatal" => ReplyKind::Fatal,
            "!empty" => ReplyKind::Empty,
            _ => return Err(UnknownReply(first)),
        };
        let mut r = Self::new(kind);
        for w in words {
            if let Some(t) = w.strip_prefix(".tag=") {
                r.tag = Some(t.to_owned());
            } else if let Some(a) = w.strip_prefix('=') {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                r.attrs.push((k.to_owned(), v.to_owned()));
            } else {
                r.other.push(w);
            }
        }
        Ok(r)
    }

    /// The reply as a sentence.
    pub fn sentence(&self) -> Sentence {
        let mut w = vec![self.kind.word().to_owned()];
        w.extend(self.attrs.iter().map(|(k, v)| format!("={k}={v}")));
        w.extend(self.other.iter().cloned());
        if let Some(t) = &self.tag {
            w.push(format!(".tag={t}"));
        }
        Sentence(w)
    }

    /// The value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        encode_len(n, &mut v).unwrap();
        v
    }

    /// Every length class at and around its boundaries, with the bytes RouterOS's documentation
    /// gives, and the round trip.
    #[test]
    fn length_classes_at_their_boundaries() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (0x7F, &[0x7F]),
            (0x80, &[0x80, 0x80]),
            (0x3FFF, &[0xBF, 0xFF]),
            (0x4000, &[0xC0, 0x40, 0x00]),
            (0x1F_FFFF, &[0xDF, 0xFF, 0xFF]),
            (0x20_0000, &[0xE0, 0x20, 0x00, 0x00]),
            (0x0FFF_FFFF, &[0xEF, 0xFF, 0xFF, 0xFF]),
            (0x1000_0000, &[0xF0, 0x10, 0x00, 0x00, 0x00]),
            (0xFFFF_FFFF, &[0xF0, 0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for &(n, bytes) in cases {
            assert_eq!(enc(n), bytes, "encoding {n:#x}");
            assert_eq!(
                decode_len(bytes).unwrap(),
                Some((n as u64, bytes.len())),
                "decoding {n:#x}"
            );
            // A prefix cut short asks for more bytes instead of guessing.
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_len(&bytes[..cut]).unwrap(),
                    None,
                    "{n:#x} cut at {cut}"
                );
            }
        }
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            encode_len(0x1_0000_0000, &mut Vec::new()),
            Err(WireError::Unencodable(0x1_0000_0000))
        );
        for b in 0xF1..=0xFF {
            assert_eq!(decode_len(&[b, 0, 0, 0, 0]), Err(WireError::BadPrefix(b)));
        }
    }

    #[test]
    fn words_of_each_class_round_trip_in_a_sentence() {
        let words: Vec<String> = [0x7F, 0x80, 0x3FFF, 0x4000, 0x1F_FFF]
            .iter()
            .map(|&n| "x".repeat(n))
            .collect();
        let s = Sentence(words);
        let bytes = s.encode().unwrap();
        let (back, used) = Sentence::decode(&bytes).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(used, bytes.len());
        // Incomplete at every cut.
        for cut in [0, 1, 2, 200, bytes.len() - 1] {
            assert_eq!(Sentence::decode(&bytes[..cut]).unwrap(), None);
        }
        // Two sentences back to back: the first one is taken alone.
        let mut two = bytes.clone();
        two.extend_from_slice(&Sentence(vec!["!done".into()]).encode().unwrap());
        assert_eq!(Sentence::decode(&two).unwrap().unwrap().1, bytes.len());
    }

    #[test]
    fn hostile_lengths_are_refused_not_allocated() {
        // 0x0FFFFFFF bytes announced: refused before any buffering.
        let mut b = Vec::new();
        encode_len(0x0FFF_FFFF, &mut b).unwrap();
        assert_eq!(
            Sentence::decode(&b),
            Err(WireError::WordTooLong(0x0FFF_FFFF))
        );
        let many: Vec<u8> = std::iter::repeat_n([1u8, b'a'], MAX_WORDS + 1)
            .flatten()
            .chain([0])
            .collect();
        assert_eq!(Sentence::decode(&many), Err(WireError::TooManyWords));
    }

    #[test]
    fn commands_carry_attributes_queries_and_tag() {
        let mut c = Command::new("/ppp/active/print")
            .proplist(&[".id", "name"])
            .attr("comment", "a=b")
            .query("name=alice")
            .query("#|");
        c.tag = Some("7".into());
        let s = c.sentence();
        assert_eq!(
            s.0,
            [
                "/ppp/active/print",
                "=.proplist=.id,name",
                "=comment=a=b",
                "?name=alice",
                "?#|",
                ".tag=7"
            ]
        );
        assert_eq!(Command::parse(&s).unwrap(), c);
        assert_eq!(c.get("comment"), Some("a=b"));
    }

    #[test]
    fn replies_of_every_kind() {
        for kind in [
            ReplyKind::Re,
            ReplyKind::Done,
            ReplyKind::Trap,
            ReplyKind::Fatal,
            ReplyKind::Empty,
        ] {
            let r = Reply::new(kind)
                .attr("message", "x=y")
                .tagged(Some("3".into()));
            let back = Reply::parse(r.sentence()).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.get("message"), Some("x=y"));
        }
        let fatal = Reply::parse(Sentence(vec![
            "!fatal".into(),
            "session terminated on request".into(),
        ]))
        .unwrap();
        assert_eq!(fatal.other, ["session terminated on request"]);
        let done = Reply::parse(Sentence(vec!["!done".into(), "=ret=abc".into()])).unwrap();
        assert_eq!(done.get("ret"), Some("abc"));
        assert!(Reply::parse(Sentence(vec!["/login".into()])).is_err());
        assert!(Reply::parse(Sentence(vec![])).is_err());
    }

    /// Replays the seed corpus shared with the cargo-fuzz target `routeros_decode`: files named
    /// `ok-*` hold whole reply sentences, `bad-*` must be refused, nothing may panic.
    #[test]
    fn corpus_replay() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/routeros");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let result = super::super::fuzz_decode(&bytes);
            if name.starts_with("ok-") {
                assert!(matches!(result, Ok(n) if n > 0), "{name}: {result:?}");
            } else if name.starts_with("bad-") {
                assert!(result.is_err(), "{name} was accepted");
            }
            seen += 1;
        }
        assert!(
            seen >= 6,
            "corpus in {} has only {seen} files",
            dir.display()
        );
    }
}
