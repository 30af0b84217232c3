//! Stream names become URL path segments, Kafka keys and (for recordings) directory names, so only a
//! conservative character set is accepted: anything that could escape a path is refused up front.

/// Longest accepted stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 128;

/// Why a stream name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    /// The name is empty.
    #[error("stream name is empty")]
    Empty,
    /// The name is longer than [`MAX_STREAM_NAME_LEN`].
    #[error("stream name is {0} bytes long; at most {MAX_STREAM_NAME_LEN} are allowed")]
    TooLong(usize),
    /// The name contains a character outside `[A-Za-z0-9_.-]`.
    #[error("stream name contains {0:?}; only letters, digits, '_', '-' and '.' are allowed")]
    BadChar(char),
    /// The name is `.`/`..` or starts with a dot, which paths would treat specially.
    #[error("stream name may not start with '.'")]
    LeadingDot,
}

/// Checks that `name` is safe to use as a path segment, record key and directory name.
pub fn validate_stream_name(name: &str) -> Result<(), StreamNameError> {
    if name.is_empty() {
        return Err(StreamNameError::Empty);
    }
    if name.len() > MAX_STREAM_NAME_LEN {
        return Err(StreamNameError::TooLong(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(StreamNameError::BadChar(c));
    }
    if name.starts_with('.') {
        return Err(StreamNameError::LeadingDot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["cam1", "my-stream_2", "a.b", "X"] {
            assert_eq!(validate_stream_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_names_that_could_escape_a_path() {
        assert_eq!(validate_stream_name(""), Err(StreamNameError::Empty));
        assert_eq!(validate_stream_name(".."), Err(StreamNameError::LeadingDot));
        assert_eq!(
            validate_stream_name("a/b"),
            Err(StreamNameError::BadChar('/'))
        );
        assert_eq!(
            validate_stream_name("a%2Fb"),
            Err(StreamNameError::BadChar('%'))
        );
        assert_eq!(
            validate_stream_name("a\0"),
            Err(StreamNameError::BadChar('\0'))
        );
        assert_eq!(
            validate_stream_name("é"),
            Err(StreamNameError::BadChar('é'))
        );
        assert_eq!(
            validate_stream_name(&"a".repeat(1024)),
            Err(StreamNameError::TooLong(1024))
        );
    }
}
