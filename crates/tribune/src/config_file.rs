//! `tribune serve --config FILE`: the same settings as the flags, in TOML, with the flags'
//! names (`max_listeners = 20000`, `trusted_proxies = ["10.0.0.0/8"]`). A flag given on the
//! command line (or through its environment variable) wins over the file; the file wins over
//! the defaults. Unknown keys are an error, so a misspelt setting is never silently ignored.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;

use crate::ServeArgs;

/// Every setting of `serve`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    batch_ms: Option<u64>,
    batch_max_ms: Option<u64>,
    batch_writes: Option<u32>,
    secret: Option<String>,
    udp: Option<SocketAddr>,
    public_ip: Option<IpAddr>,
    ws_read_buffer: Option<usize>,
    data_dir: Option<PathBuf>,
    no_data: Option<bool>,
    retention_days: Option<f64>,
    max_listeners: Option<u64>,
    max_webrtc_listeners: Option<usize>,
    join_rate: Option<u32>,
    pow_threshold: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    header_timeout: Option<u64>,
    join_rate_per_ip: Option<u32>,
    join_rate_per_subnet: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
    api_key: Option<Vec<String>>,
    open_rooms: Option<bool>,
    max_rooms: Option<usize>,
    idle_end: Option<DurationValue>,
}

/// A duration in the file: seconds, or text such as "30m".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(u64),
    Text(String),
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig> {
        Ok(toml::from_str(text)?)
    }

    /// Sets every field of `args` that the file names and the command line did not.
    pub fn apply(self, args: &mut ServeArgs, matches: &ArgMatches) -> Result<()> {
        // The argument ids clap derives from the field names.
        let from_cli = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        macro_rules! take {
            ($($field:ident),* $(,)?) => {$(
                if let Some(v) = self.$field {
                    if !from_cli(stringify!($field)) {
                        args.$field = v.into();
                    }
                }
            )*};
        }
        take!(
            listen,
            batch_ms,
            batch_max_ms,
            batch_writes,
            ws_read_buffer,
            data_dir,
            no_data,
            retention_days,
            max_listeners,
            max_webrtc_listeners,
            join_rate,
            pow_threshold,
            max_connections,
            max_connections_per_ip,
            header_timeout,
            join_rate_per_ip,
            join_rate_per_subnet,
            api_key,
            open_rooms,
            max_rooms,
        );
        if let Some(v) = self.idle_end {
            if !from_cli("idle_end") {
                let text = match v {
                    DurationValue::Seconds(n) => n.to_string(),
                    DurationValue::Text(t) => t,
                };
                args.idle_end = crate::parse_duration(&text)
                    .map_err(anyhow::Error::msg)
                    .context("idle_end")?;
            }
        }
        if let Some(v) = self.secret {
            if !from_cli("secret") {
                args.secret = Some(v);
            }
        }
        if let Some(v) = self.udp {
            if !from_cli("udp") {
                args.udp = Some(v);
            }
        }
        if let Some(v) = self.public_ip {
            if !from_cli("public_ip") {
                args.public_ip = Some(v);
            }
        }
        if let Some(nets) = self.trusted_proxies {
            if !from_cli("trusted_proxies") {
                args.trusted_proxies = nets
                    .iter()
                    .map(|n| crate::parse_net(n).map_err(anyhow::Error::msg))
                    .collect::<Result<_>>()
                    .context("trusted_proxies")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};
    use std::time::Duration;

    fn serve_args(argv: &[&str]) -> (ServeArgs, ArgMatches) {
        let matches = crate::Cli::command()
            .try_get_matches_from(argv)
            .expect("valid arguments");
        let (_, sub) = matches.subcommand().expect("a subcommand");
        let args = ServeArgs::from_arg_matches(sub).expect("serve arguments");
        (args, sub.clone())
    }

    #[test]
    fn the_file_sets_what_the_command_line_did_not() {
        let file = FileConfig::parse(
            r#"
            listen = "127.0.0.1:9000"
            max_listeners = 20000
            join_rate = 300
            retention_days = 30
            trusted_proxies = ["10.0.0.0/8", "fd00::/8"]
            api_key = ["0123456789abcdef-key"]
            open_rooms = true
            max_rooms = 50
            idle_end = "2h"
            "#,
        )
        .unwrap();
        let (mut args, m) = serve_args(&["tribune", "serve", "--join-rate", "50"]);
        file.apply(&mut args, &m).unwrap();
        assert_eq!(args.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(args.max_listeners, 20_000);
        assert_eq!(args.join_rate, 50, "the command line wins");
        assert_eq!(args.retention_days, 30.0);
        assert_eq!(args.trusted_proxies.len(), 2);
        // Untouched settings keep their defaults.
        assert_eq!(args.batch_ms, 20);
        let config = args.config().unwrap();
        assert_eq!(config.admission.gate.max_listeners, 20_000);
        assert_eq!(
            config.rooms.api_keys,
            vec!["0123456789abcdef-key".to_owned()]
        );
        assert!(config.rooms.open);
        assert_eq!(config.rooms.max_rooms, 50);
        assert_eq!(config.rooms.idle_end, Duration::from_secs(7200));
        let file = FileConfig::parse("idle_end = 90").unwrap();
        let (mut args, m) = serve_args(&["tribune", "serve"]);
        file.apply(&mut args, &m).unwrap();
        assert_eq!(args.idle_end, Duration::from_secs(90));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        for (text, says) in [
            ("max_listener = 5", "unknown field"),
            ("join_rate = \"fast\"", "invalid type"),
            ("listen = \"nowhere\"", "listen"),
            ("max_listeners = 5\nmax_listeners = 6", "duplicate"),
            ("api_key = \"one\"", "invalid type"),
        ] {
            let e = FileConfig::parse(text).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{text}: {e:#}");
        }
        let file = FileConfig::parse(r#"trusted_proxies = ["not a net"]"#).unwrap();
        let (mut args, m) = serve_args(&["tribune", "serve"]);
        assert!(file.apply(&mut args, &m).is_err());
    }
}
