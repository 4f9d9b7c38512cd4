//! Bounds on what one request may make the service hold: values echoed in
//! error messages are cut ([`excerpt`]), and problem lists keep their first
//! entries while counting the rest ([`Capped`]), so a hostile body of any
//! size gets an answer of bounded size, built in bounded memory.

/// Characters of an input value an error message shows at most.
pub const ECHO_CHARS: usize = 64;

/// `value` as a quoted, escaped string (as `{:?}` writes it), cut to at most
/// `max_chars` characters of the original followed by `…` and its length.
pub fn excerpt(value: &str, max_chars: usize) -> String {
    // Cut the input, then escape: never an escape cut in half.
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{:?}… ({} bytes in all)", &value[..end], value.len()),
        None => format!("{value:?}"),
    }
}

/// The first `capacity` items pushed, and how many were pushed in all.
#[derive(Debug, Clone)]
pub struct Capped<T> {
    items: Vec<T>,
    capacity: usize,
    total: usize,
}

impl<T> Capped<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Vec::new(),
            capacity,
            total: 0,
        }
    }

    /// Keeps `item` while there is room; counts it either way.
    pub fn push(&mut self, item: T) {
        self.total += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
        }
    }

    /// Like [`Capped::push`], building the item only when it is kept (an
    /// item past the cap costs nothing but the count).
    pub fn push_with(&mut self, make: impl FnOnce() -> T) {
        self.total += 1;
        if self.items.len() < self.capacity {
            self.items.push(make());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Items pushed in all, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(excerpt("abc", 8), "\"abc\"");
        assert_eq!(excerpt("a\u{1}b", 8), "\"a\\u{1}b\"");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let value = "ж".repeat(100);
        let shown = excerpt(&value, 10);
        assert!(
            shown.starts_with(&format!("\"{}\"…", "ж".repeat(10))),
            "{shown}"
        );
        assert!(shown.ends_with("(200 bytes in all)"), "{shown}");
        // Control characters escape to several characters each: the cut is
        // on the input, so the output stays a small multiple of max_chars.
        let hostile = "\u{1}".repeat(50_000_000 / 1000);
        assert!(excerpt(&hostile, ECHO_CHARS).len() < 600);
    }

    #[test]
    fn capped_lists_keep_the_first_and_count_all() {
        let mut capped = Capped::new(2);
        for i in 0..5 {
            capped.push(i);
        }
        let mut built = 0;
        for _ in 0..5 {
            capped.push_with(|| {
                built += 1;
                9
            });
        }
        assert_eq!(capped.items(), [0, 1]);
        assert_eq!(capped.total(), 10);
        assert_eq!(built, 0);
        assert!(capped.is_full());
    }
}
