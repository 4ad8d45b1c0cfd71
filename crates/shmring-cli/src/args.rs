//! Hand-written argument parsing: a handful of flags per subcommand does not
//! justify a parser dependency (and its build time).

use std::time::Duration;

use crate::{escape, Failure};

/// The arguments of one subcommand, consumed option by option.
pub struct Args {
    command: &'static str,
    items: Vec<String>,
}

impl Args {
    /// The arguments after the subcommand's name.
    pub fn new(command: &'static str, items: Vec<String>) -> Args {
        Args { command, items }
    }

    /// Whether `--help`/`-h` is among the arguments.
    pub fn wants_help(&self) -> bool {
        self.items
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == "--help" || a == "-h")
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.items
            .iter()
            .take_while(|a| *a != "--")
            .position(|a| a == name)
    }

    /// Removes every `name`; whether there was one.
    pub fn flag(&mut self, name: &str) -> bool {
        let mut found = false;
        while let Some(i) = self.position(name) {
            self.items.remove(i);
            found = true;
        }
        found
    }

    /// Removes `name VALUE` (or `name=VALUE`) and returns the value.
    ///
    /// # Errors
    ///
    /// `name` is last, with no value after it.
    pub fn value(&mut self, name: &str) -> Result<Option<String>, Failure> {
        let prefix = format!("{name}=");
        if let Some(i) = self.items.iter().position(|a| a.starts_with(&prefix)) {
            let item = self.items.remove(i);
            return Ok(Some(item[prefix.len()..].to_owned()));
        }
        let Some(i) = self.position(name) else {
            return Ok(None);
        };
        if i + 1 >= self.items.len() {
            return Err(self.usage(format!("{name} needs a value")));
        }
        self.items.remove(i);
        Ok(Some(self.items.remove(i)))
    }

    /// Removes `name [VALUE]`: the value is taken only when it does not look
    /// like an option and is a number (`--watch 2 NAME` vs `--watch NAME`).
    ///
    /// # Errors
    ///
    /// None today; a `Result` like its siblings.
    pub fn optional_value(&mut self, name: &str) -> Result<Option<Option<String>>, Failure> {
        let prefix = format!("{name}=");
        if let Some(i) = self.items.iter().position(|a| a.starts_with(&prefix)) {
            let item = self.items.remove(i);
            return Ok(Some(Some(item[prefix.len()..].to_owned())));
        }
        let Some(i) = self.position(name) else {
            return Ok(None);
        };
        self.items.remove(i);
        let numeric = self.items.get(i).is_some_and(|v| v.parse::<f64>().is_ok());
        Ok(Some(numeric.then(|| self.items.remove(i))))
    }

    fn check_no_options(&self) -> Result<(), Failure> {
        for a in self.items.iter().take_while(|a| *a != "--") {
            if a.starts_with('-') && a.len() > 1 {
                return Err(self.usage(format!("unknown option {a}")));
            }
        }
        Ok(())
    }

    fn operands(&mut self) -> Vec<String> {
        let items = std::mem::take(&mut self.items);
        items.into_iter().filter(|a| a != "--").collect()
    }

    /// The one remaining positional argument.
    ///
    /// # Errors
    ///
    /// An unknown option, none, or more than one.
    pub fn positional(&mut self, what: &str) -> Result<String, Failure> {
        self.check_no_options()?;
        let mut operands = self.operands();
        match operands.len() {
            1 => Ok(operands.remove(0)),
            0 => Err(self.usage(format!("missing {what}"))),
            _ => Err(self.usage(format!("unexpected argument {:?}", operands[1]))),
        }
    }

    /// All remaining positional arguments (at least one).
    ///
    /// # Errors
    ///
    /// An unknown option, or none.
    pub fn rest(&mut self, what: &str) -> Result<Vec<String>, Failure> {
        self.check_no_options()?;
        let operands = self.operands();
        if operands.is_empty() {
            return Err(self.usage(format!("missing {what}")));
        }
        Ok(operands)
    }

    /// All remaining positional arguments (maybe none).
    ///
    /// # Errors
    ///
    /// An unknown option.
    pub fn optional_rest(&mut self) -> Result<Vec<String>, Failure> {
        self.check_no_options()?;
        Ok(self.operands())
    }

    /// Checks nothing is left.
    ///
    /// # Errors
    ///
    /// An unknown option or an unexpected argument.
    pub fn finish(&mut self) -> Result<(), Failure> {
        self.check_no_options()?;
        match self.operands().first() {
            Some(a) => Err(self.usage(format!("unexpected argument {a:?}"))),
            None => Ok(()),
        }
    }

    fn usage(&self, message: String) -> Failure {
        Failure::usage(format!(
            "{}: {message} (see 'shmring {} --help')",
            self.command, self.command
        ))
    }
}

/// Parses `text`, the value of `option`, as seconds within `min..=max`.
///
/// # Errors
///
/// Not a number, not finite (`nan`, `inf`), or out of range: a usage error,
/// never a panic (`Duration::from_secs_f64` panics on huge values).
pub fn seconds(option: &str, text: &str, min: f64, max: f64) -> Result<Duration, Failure> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (min..=max).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            Failure::usage(format!(
                "{option} wants seconds from {min} to {max}, not {:?}",
                escape::text(text)
            ))
        })
}

/// Parses `text`, the value of `option`, as a whole number within
/// `min..=max`.
///
/// # Errors
///
/// Not a whole number (`1e3`, `-1`, `0x10`), or out of range: a usage error.
pub fn count(option: &str, text: &str, min: u64, max: u64) -> Result<u64, Failure> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            Failure::usage(format!(
                "{option} wants a whole number from {min} to {max}, not {:?}",
                escape::text(text)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_checked_not_panicked_on() {
        for bad in [
            "1e20", "nan", "NaN", "inf", "-inf", "-1", "0", "0.0001", "", "x", "1e400",
        ] {
            assert!(seconds("--watch", bad, 0.01, 86400.0).is_err(), "{bad:?}");
        }
        assert_eq!(
            seconds("--watch", "0.5", 0.01, 86400.0).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            seconds("--watch", "86400", 0.01, 86400.0).unwrap(),
            Duration::from_secs(86400)
        );
    }

    #[test]
    fn counts_are_whole_numbers_in_range() {
        for bad in ["0", "-1", "1e3", "1.5", "0x10", "", "18446744073709551616"] {
            assert!(count("--count", bad, 1, u64::MAX).is_err(), "{bad:?}");
        }
        assert_eq!(count("--count", "3", 1, u64::MAX).unwrap(), 3);
        assert_eq!(
            count("--count", "18446744073709551615", 1, u64::MAX).unwrap(),
            u64::MAX
        );
    }
}
