//! Splits a syslog TCP stream into messages (RFC 6587): octet counting (`<length> <message>`)
//! when a frame starts with a digit, otherwise a line ended by LF (a trailing CR is dropped).
//! A message longer than the limit is cut there and the rest of it skipped, so a connection
//! holds at most one limit's worth of memory.

use thiserror::Error;

/// One message taken from the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub message: Vec<u8>,
    pub truncated: bool,
}

#[derive(Debug, PartialEq, Eq, Error)]
pub enum FramingError {
    #[error("octet count longer than {MAX_LENGTH_DIGITS} digits")]
    LengthTooLong,
    #[error("octet count not followed by a space")]
    NoSpaceAfterLength,
    #[error("the stream ended inside an octet-counted message")]
    EndedInsideMessage,
}

/// Digits an octet count may have (more would pass any message limit many times over).
const MAX_LENGTH_DIGITS: u8 = 9;

enum State {
    /// Between frames: separators are skipped.
    Start,
    /// Reading an octet count.
    Length { value: usize, digits: u8 },
    /// Inside an octet-counted message.
    Counted { remaining: usize, frame: Frame },
    /// Inside a newline-terminated message.
    Line { frame: Frame },
}

pub struct Framer {
    max: usize,
    state: State,
}

impl Framer {
    /// Keeps at most `max` bytes of each message.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            state: State::Start,
        }
    }

    /// Takes the next bytes of the stream, handing each completed message to `emit`. After an
    /// error the stream cannot be resynchronised; the connection should be closed.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(Frame),
    ) -> Result<(), FramingError> {
        while let Some(&byte) = data.first() {
            match &mut self.state {
                State::Start => match byte {
                    b'\n' | b'\r' | b'\0' | b' ' => data = &data[1..],
                    b'1'..=b'9' => {
                        self.state = State::Length {
                            value: 0,
                            digits: 0,
                        }
                    }
                    _ => {
                        self.state = State::Line {
                            frame: self.frame(),
                        }
                    }
                },
                State::Length { value, digits } => {
                    data = &data[1..];
                    match byte {
                        b'0'..=b'9' => {
                            *digits += 1;
                            if *digits > MAX_LENGTH_DIGITS {
                                return Err(FramingError::LengthTooLong);
                            }
                            *value = *value * 10 + usize::from(byte - b'0');
                        }
                        b' ' => {
                            let remaining = *value;
                            let mut frame = self.frame();
                            frame.truncated = remaining > self.max;
                            self.state = State::Counted { remaining, frame };
                        }
                        _ => return Err(FramingError::NoSpaceAfterLength),
                    }
                }
                State::Counted { remaining, frame } => {
                    let taken = (*remaining).min(data.len());
                    let room = self.max - frame.message.len();
                    frame.message.extend_from_slice(&data[..taken.min(room)]);
                    *remaining -= taken;
                    data = &data[taken..];
                    if *remaining == 0 {
                        self.complete(&mut emit);
                    }
                }
                State::Line { frame } => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let line = &data[..end.unwrap_or(data.len())];
                    let room = self.max - frame.message.len();
                    if line.len() > room {
                        frame.truncated = true;
                    }
                    frame
                        .message
                        .extend_from_slice(&line[..line.len().min(room)]);
                    match end {
                        Some(end) => {
                            data = &data[end + 1..];
                            if frame.message.last() == Some(&b'\r') && !frame.truncated {
                                frame.message.pop();
                            }
                            self.complete(&mut emit);
                        }
                        None => data = &[],
                    }
                }
            }
        }
        Ok(())
    }

    /// The stream ended: a last line without its LF is still a message.
    pub fn finish(self) -> Result<Option<Frame>, FramingError> {
        match self.state {
            State::Start => Ok(None),
            State::Line { frame } => Ok(Some(frame)),
            State::Length { .. } | State::Counted { .. } => Err(FramingError::EndedInsideMessage),
        }
    }

    fn frame(&self) -> Frame {
        Frame {
            message: Vec::with_capacity(self.max.min(INITIAL_CAPACITY)),
            truncated: false,
        }
    }

    fn complete(&mut self, emit: &mut impl FnMut(Frame)) {
        if let State::Counted { frame, .. } | State::Line { frame } =
            std::mem::replace(&mut self.state, State::Start)
        {
            emit(frame);
        }
    }
}

/// Room reserved for a message before its length is known.
const INITIAL_CAPACITY: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in order and returns the messages (as text, with a `+` for truncated).
    fn frames(max: usize, chunks: &[&[u8]]) -> Result<Vec<String>, FramingError> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut push = |frame: Frame| {
            let mut text = String::from_utf8_lossy(&frame.message).into_owned();
            if frame.truncated {
                text.push('+');
            }
            out.push(text);
        };
        for chunk in chunks {
            framer.feed(chunk, &mut push)?;
        }
        if let Some(last) = framer.finish()? {
            push(last);
        }
        Ok(out)
    }

    #[test]
    fn octet_counted_messages_may_hold_newlines_and_split_anywhere() {
        let got = frames(100, &[b"12 <13>a\nb c d", b"e10 <13>hello", b"!"]).unwrap();
        assert_eq!(got, ["<13>a\nb c de", "<13>hello!"]);
    }

    #[test]
    fn newline_framing_drops_cr_and_keeps_a_last_line_without_lf() {
        let got = frames(100, &[b"<13>one\r\n<13>tw", b"o\n\n<13>three"]).unwrap();
        assert_eq!(got, ["<13>one", "<13>two", "<13>three"]);
    }

    #[test]
    fn long_messages_are_cut_at_the_limit_and_the_stream_goes_on() {
        let got = frames(4, &[b"<13>abcdef\n12 <13>12345678<1>x\n"]).unwrap();
        assert_eq!(got, ["<13>+", "<13>+", "<1>x"]);
    }

    #[test]
    fn a_broken_octet_count_is_an_error() {
        assert_eq!(
            frames(100, &[b"12x"]),
            Err(FramingError::NoSpaceAfterLength)
        );
        assert_eq!(
            frames(100, &[b"1234567890 "]),
            Err(FramingError::LengthTooLong)
        );
        assert_eq!(
            frames(100, &[b"20 <13>short"]),
            Err(FramingError::EndedInsideMessage)
        );
    }
}
