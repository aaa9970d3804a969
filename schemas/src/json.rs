//! A strict, allocation-free JSON reader for the ingest hot path: it checks a subset of JSON's
//! grammar (object keys without escapes, at most [`MAX_DEPTH`] levels) and borrows text from the
//! input. Anything outside the subset makes it decline (`None`), and callers then use serde_json,
//! so that whatever this accepts, serde_json accepts too, as the same text.

/// Nesting allowed inside `data` or an unknown member: well below serde_json's limit of 128
/// for the whole body, so nothing accepted here would exceed it there.
pub(crate) const MAX_DEPTH: usize = 64;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that is zero; exact for the lowest such byte (a borrow
/// only flags bytes above a true zero), which is the only one read.
#[inline]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGHS
}

/// The position of the first byte of `b` that ends or interrupts a plain string: `"`, `\`
/// or a control character (below 0x20). Eight bytes at a time; most strings here are
/// shorter than `memchr`'s vector setup pays for.
#[inline]
fn string_stop(b: &[u8]) -> Option<usize> {
    let (chunks, rest) = b.as_chunks::<8>();
    for (k, c) in chunks.iter().enumerate() {
        let w = u64::from_le_bytes(*c);
        let hits = zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS);
        if hits != 0 {
            return Some(k * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| chunks.len() * 8 + p)
}

pub(crate) struct Cursor<'a> {
    pub(crate) s: &'a str,
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string with no escape and no control character: its content, borrowed.
    #[inline]
    pub(crate) fn plain_string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + string_stop(self.b.get(start..)?)?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        // `"` is ASCII, so both ends are character boundaries.
        self.s.get(start..end)
    }

    /// A string value, whose escapes are checked as serde_json checks a string it skips:
    /// one of `"\/bfnrt`, or `u` and four hex digits. Control characters are refused.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            self.i += string_stop(self.b.get(self.i..)?)?;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    b'u' => {
                        let hex = self.b.get(self.i + 2..self.i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let n = self.b.get(self.i..).map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        self.i += n;
        n
    }

    /// A JSON number (RFC 8259 grammar; what follows is the caller's to check).
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.b.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    /// Past one JSON value, checking its syntax on the way: a strict subset of what serde
    /// accepts (object keys without escapes; at most [`MAX_DEPTH`] levels), so that text
    /// accepted here is text serde accepts.
    pub(crate) fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.plain_string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    if !self.next_or_end(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    if !self.next_or_end(b']')? {
                        return Some(());
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// After an element of an object or array: `Some(true)` past a `,` and the whitespace after
    /// it (another element follows), `Some(false)` just past `close` (the container ended),
    /// `None` for anything else.
    #[inline]
    pub(crate) fn next_or_end(&mut self, close: u8) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.ws();
                Some(true)
            }
            c if c == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// The text of one JSON value, checked ([`Self::value`]).
    pub(crate) fn value_text(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.value(0)?;
        self.s.get(start..self.i)
    }
}

/// The values of several members of a JSON object, read in one pass: `found[i]` is the text of
/// the last member named `names[i]`, if any. `None` (with `found` untouched) when the text is
/// not an object in the subset this module reads (a key with an escape, for one) or has
/// anything after it but whitespace; the caller then asks serde_json.
pub(crate) fn members<'a>(object: &'a str, names: &[&str], found: &mut [Option<&'a str>]) -> Option<()> {
    let mut local: [Option<&'a str>; 8] = [None; 8];
    let local = local.get_mut(..found.len())?;
    let mut c = Cursor { s: object, b: object.as_bytes(), i: 0 };
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if c.eat(b'}').is_none() {
        loop {
            let key = c.plain_string()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            let value = c.value_text()?;
            for (name, slot) in names.iter().zip(local.iter_mut()) {
                if *name == key {
                    *slot = Some(value);
                }
            }
            if !c.next_or_end(b'}')? {
                break;
            }
        }
    }
    c.ws();
    if c.i != c.b.len() {
        return None;
    }
    found.copy_from_slice(local);
    Some(())
}
