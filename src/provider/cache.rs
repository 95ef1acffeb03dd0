//! amiprobe's cache directory: where a provider keeps what is worth knowing beyond one run (the qemu
//! provider's answer to "does KVM work here"). Nothing in it is needed: a provider that finds it
//! missing or unusable works it out again.
//!
//! Resolved as `$AMIPROBE_CACHE_DIR`, else `$XDG_CACHE_HOME/amiprobe`, else `$HOME/.cache/amiprobe`.

use std::ffi::OsString;
use std::path::PathBuf;

/// Why there is no cache directory.
#[derive(Debug, thiserror::Error)]
#[error("no cache directory: $AMIPROBE_CACHE_DIR, $XDG_CACHE_HOME and $HOME are all unset")]
pub struct NoCacheDir;

/// amiprobe's cache directory, from the environment (see the module docs); it need not exist yet.
pub fn cache_dir() -> Result<PathBuf, NoCacheDir> {
    cache_dir_from(|name| std::env::var_os(name))
}

/// [`cache_dir`] with the environment read through `var`. An empty variable counts as unset, and so
/// does a relative `$XDG_CACHE_HOME`, as the XDG base directory specification says.
pub fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, NoCacheDir> {
    let set = |name: &str| var(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("AMIPROBE_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|path| path.is_absolute()) {
        return Ok(xdg.join("amiprobe"));
    }
    set("HOME").map(|home| home.join(".cache").join("amiprobe")).ok_or(NoCacheDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<PathBuf, NoCacheDir> {
        cache_dir_from(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn amiprobe_s_own_variable_wins_then_xdg_then_home() {
        let all = [("AMIPROBE_CACHE_DIR", "/a"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(resolve(&all).unwrap(), PathBuf::from("/a"));
        assert_eq!(resolve(&all[1..]).unwrap(), PathBuf::from("/x/amiprobe"));
        assert_eq!(resolve(&all[2..]).unwrap(), PathBuf::from("/h/.cache/amiprobe"));
    }

    #[test]
    fn empty_and_relative_values_count_as_unset() {
        let vars = [("AMIPROBE_CACHE_DIR", ""), ("XDG_CACHE_HOME", "relative"), ("HOME", "/h")];
        assert_eq!(resolve(&vars).unwrap(), PathBuf::from("/h/.cache/amiprobe"));
        let err = resolve(&[("HOME", "")]).unwrap_err();
        assert!(err.to_string().contains("$AMIPROBE_CACHE_DIR"), "{err}");
    }
}
