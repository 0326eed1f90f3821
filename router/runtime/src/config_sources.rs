//! Where each setting came from, so that a message about a bad value names what the operator wrote:
//! the environment variable (and its flag) for a value from the environment, the flag otherwise.
//!
//! clap reports an invalid value of `SWITCHBOARD_MAX_CONNECTIONS` as one of `--max-connections`, and
//! the checks run after parsing only know the flag; an operator who never typed that flag then looks
//! for it in vain. [`try_parse_from`] parses like clap's `Parser::try_parse_from` but names the
//! variable in such parse errors, and returns the [`Sources`] with which [`Sources::annotate`] names
//! the variables in later messages. Both binaries' `Config`s parse through it, by
//! [`parse_with_sources!`](crate::parse_with_sources).

use std::ffi::{OsStr, OsString};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command, FromArgMatches};

/// The settings that took their value from an environment variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// (flag, variable), e.g. (`--slots`, `SWITCHBOARD_SLOTS`).
    from_env: Vec<(String, String)>,
}

impl Sources {
    /// The sources of what `command` parsed into `matches`.
    fn of(command: &Command, matches: &ArgMatches) -> Sources {
        let from_env = command
            .get_arguments()
            .filter(|arg| {
                matches.value_source(arg.get_id().as_str()) == Some(ValueSource::EnvVariable)
            })
            .filter_map(|arg| {
                let flag = format!("--{}", arg.get_long()?);
                Some((flag, arg.get_env()?.to_string_lossy().into_owned()))
            })
            .collect();
        Sources { from_env }
    }

    /// Records that `flag` (e.g. `--slots`) took its value from `variable`.
    pub fn set_from_env(&mut self, flag: &str, variable: &str) {
        self.from_env.push((flag.to_owned(), variable.to_owned()));
    }

    /// The variable `flag` (e.g. `--slots`) took its value from, if it came from the environment.
    pub fn variable(&self, flag: &str) -> Option<&str> {
        self.from_env
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, variable)| variable.as_str())
    }

    /// `message` with every flag in it that was set through the environment followed by its
    /// variable: `--slots must be …` becomes `--slots (from SWITCHBOARD_SLOTS) must be …`.
    pub fn annotate(&self, message: &str) -> String {
        let mut out = String::with_capacity(message.len());
        let mut rest = message;
        while let Some(at) = rest.find("--") {
            out.push_str(&rest[..at]);
            let name = &rest[at + 2..];
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            let flag = &rest[at..at + 2 + end];
            out.push_str(flag);
            if let Some(variable) = self.variable(flag) {
                out.push_str(" (from ");
                out.push_str(variable);
                out.push(')');
            }
            rest = &rest[at + 2 + end..];
        }
        out.push_str(rest);
        out
    }
}

/// Parses `args` (the program name first) with `command` into `C`, like clap's
/// `Parser::try_parse_from`, and tells which settings came from the environment. An invalid value
/// from an environment variable is reported under the variable's name and its flag's.
pub fn try_parse_from<C, I, T>(mut command: Command, args: I) -> Result<(C, Sources), clap::Error>
where
    C: FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut matches = match command.try_get_matches_from_mut(args.iter().cloned()) {
        Ok(matches) => matches,
        Err(error) => return Err(name_the_variable(&command, &args, error)),
    };
    let sources = Sources::of(&command, &matches);
    let parsed = C::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))?;
    Ok((parsed, sources))
}

/// Implements `clap::CommandFactory` and `clap::Parser` for `$config`, a `#[derive(clap::Args)]`
/// configuration with a field `sources: Sources`, so that it parses through [`try_parse_from`]:
/// errors name the environment variables values came from, and `sources` records them. `$name` is
/// the binary's name in usage and errors. (`#[derive(clap::Parser)]` would generate a `Parser`
/// whose parsing cannot be changed.)
#[macro_export]
macro_rules! parse_with_sources {
    ($config:ty, $name:expr) => {
        impl ::clap::CommandFactory for $config {
            fn command() -> ::clap::Command {
                <Self as ::clap::Args>::augment_args(::clap::Command::new($name))
            }

            fn command_for_update() -> ::clap::Command {
                <Self as ::clap::Args>::augment_args_for_update(::clap::Command::new($name))
            }
        }

        impl ::clap::Parser for $config {
            fn try_parse_from<I, T>(args: I) -> ::std::result::Result<Self, ::clap::Error>
            where
                I: ::std::iter::IntoIterator<Item = T>,
                T: ::std::convert::Into<::std::ffi::OsString> + ::std::clone::Clone,
            {
                let command = <Self as ::clap::CommandFactory>::command();
                let (mut config, sources) =
                    $crate::config_sources::try_parse_from::<Self, _, _>(command, args)?;
                config.sources = sources;
                Ok(config)
            }

            fn try_parse() -> ::std::result::Result<Self, ::clap::Error> {
                Self::try_parse_from(::std::env::args_os())
            }

            fn parse_from<I, T>(args: I) -> Self
            where
                I: ::std::iter::IntoIterator<Item = T>,
                T: ::std::convert::Into<::std::ffi::OsString> + ::std::clone::Clone,
            {
                Self::try_parse_from(args).unwrap_or_else(|e| e.exit())
            }

            fn parse() -> Self {
                Self::try_parse().unwrap_or_else(|e| e.exit())
            }
        }
    };
}

/// `error` about a value, rewritten to name the environment variable when the value came from one.
fn name_the_variable(command: &Command, args: &[OsString], error: clap::Error) -> clap::Error {
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    // clap shows the argument as `--flag <VALUE>`.
    let flag = shown.split([' ', '=']).next().unwrap_or_default();
    let Some(long) = flag.strip_prefix("--") else {
        return error;
    };
    let Some(variable) = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
    else {
        return error;
    };
    // clap reads the variable only for a flag absent from the command line.
    if std::env::var_os(variable).is_none() || on_command_line(args, long) {
        return error;
    }
    let rendered = error.render().to_string();
    let message = rendered
        .strip_prefix("error: ")
        .unwrap_or(&rendered)
        .replacen(
            &format!("'{shown}'"),
            &format!(
                "{} (the environment variable of {flag})",
                variable.to_string_lossy()
            ),
            1,
        );
    clap::Error::raw(error.kind(), message)
}

/// Whether `--long` was given in `args` (the program name first), as `--long VALUE`, `--long=VALUE`
/// or `--long` alone.
fn on_command_line(args: &[OsString], long: &str) -> bool {
    let alone = format!("--{long}");
    let with_value = format!("--{long}=");
    args.iter()
        .skip(1)
        .map(|arg| arg.as_os_str())
        .take_while(|arg| *arg != OsStr::new("--"))
        .filter_map(OsStr::to_str)
        .any(|arg| arg == alone || arg.starts_with(&with_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotate_names_the_variables_of_flags_set_through_the_environment() {
        let mut sources = Sources::default();
        sources.set_from_env("--max-frame-bytes", "SWITCHBOARD_MAX_FRAME_BYTES");
        assert_eq!(
            sources.annotate("--max-frame-bytes must be at least 1024 (got 12)"),
            "--max-frame-bytes (from SWITCHBOARD_MAX_FRAME_BYTES) must be at least 1024 (got 12)"
        );
        // A longer flag that starts the same is another flag.
        assert_eq!(
            sources.annotate(
                "--max-frame-bytes-x and --outbound-queue-bytes (1) vs --max-frame-bytes"
            ),
            "--max-frame-bytes-x and --outbound-queue-bytes (1) vs --max-frame-bytes (from \
             SWITCHBOARD_MAX_FRAME_BYTES)"
        );
        assert_eq!(
            Sources::default().annotate("--a, --b: -- c"),
            "--a, --b: -- c"
        );
    }

    #[test]
    fn flags_on_the_command_line_are_found_in_every_spelling() {
        let args: Vec<OsString> = ["prog", "--slots", "3", "--demo=yes", "--", "--late"]
            .into_iter()
            .map(OsString::from)
            .collect();
        assert!(on_command_line(&args, "slots"));
        assert!(on_command_line(&args, "demo"));
        assert!(!on_command_line(&args, "slot"));
        assert!(
            !on_command_line(&args, "late"),
            "after --, nothing is a flag"
        );
    }
}
