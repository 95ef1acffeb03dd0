//! Jump hosts as a spec names them (`user@host:port`): where an SSH probe's tunnel starts, and the
//! known_hosts file that vouches for the jump host's own key.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Jump {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub known_hosts: PathBuf,
}

/// Why a jump host's text is not `user@host[:port]`; each message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JumpError {
    #[error("jump host `{0}` has no `user@`")]
    NoUser(String),
    #[error("jump host `{0}` has an empty user")]
    EmptyUser(String),
    #[error("jump host `{text}` has an invalid port `{port}`")]
    InvalidPort { text: String, port: String },
    #[error("jump host `{0}` has no host")]
    NoHost(String),
}

impl Jump {
    /// `user@host` or `user@host:port` (a bracketed IPv6 address takes a port too).
    pub fn parse(text: &str, known_hosts: PathBuf) -> Result<Jump, JumpError> {
        let (user, rest) = text.split_once('@').ok_or_else(|| JumpError::NoUser(text.to_string()))?;
        if user.is_empty() {
            return Err(JumpError::EmptyUser(text.to_string()));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && (!host.contains(':') || host.starts_with('[')) => {
                let number = port.parse::<u16>().ok().filter(|p| *p > 0);
                let invalid = || JumpError::InvalidPort { text: text.to_string(), port: port.to_string() };
                (host, number.ok_or_else(invalid)?)
            }
            _ => (rest, 22),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(JumpError::NoHost(text.to_string()));
        }
        Ok(Jump { user: user.to_string(), host: host.to_string(), port, known_hosts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hosts_parse_with_and_without_ports() {
        let kh = PathBuf::from("/kh");
        let j = Jump::parse("ec2-user@bastion.example:2222", kh.clone()).unwrap();
        assert_eq!((j.user.as_str(), j.host.as_str(), j.port), ("ec2-user", "bastion.example", 2222));
        let j = Jump::parse("admin@10.0.0.5", kh.clone()).unwrap();
        assert_eq!((j.host.as_str(), j.port), ("10.0.0.5", 22));
        let j = Jump::parse("admin@[fd00::1]:2200", kh.clone()).unwrap();
        assert_eq!((j.host.as_str(), j.port), ("fd00::1", 2200));
        assert!(Jump::parse("bastion", kh.clone()).unwrap_err().to_string().contains("no `user@`"));
        assert!(Jump::parse("a@b:0", kh).unwrap_err().to_string().contains("invalid port"));
    }
}
