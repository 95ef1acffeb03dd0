//! What EC2 will not do for some instance types, known before anything is launched.

/// Why GetConsoleScreenshot is unavailable for this instance type, if it is.
///
/// EC2 refuses screenshots on bare metal, on Graviton (Arm) and on instances using NVIDIA GRID
/// drivers. Graviton families carry a `g` after the generation number (`m6g`, `c7gn`, `t4g`, `r6gd`),
/// plus `a1`; GRID runs on the `g` GPU families.
pub fn screenshot_unsupported(instance_type: &str) -> Option<&'static str> {
    let (family, size) = instance_type.split_once('.').unwrap_or((instance_type, ""));
    if size.contains("metal") {
        return Some("bare metal");
    }
    if family == "a1" {
        return Some("Graviton");
    }
    let letters: String = family.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let rest = &family[letters.len()..];
    let suffix: String = rest.chars().skip_while(|c| c.is_ascii_digit()).collect();
    if !rest.is_empty() && suffix.starts_with('g') {
        return Some("Graviton");
    }
    if letters == "g" {
        return Some("GPU with NVIDIA GRID drivers");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_metal_graviton_and_grid() {
        for (t, why) in [
            ("m5.metal", Some("bare metal")),
            ("c7gn.large", Some("Graviton")),
            ("t4g.micro", Some("Graviton")),
            ("r6gd.xlarge", Some("Graviton")),
            ("a1.medium", Some("Graviton")),
            ("g4dn.xlarge", Some("GPU with NVIDIA GRID drivers")),
            ("t3.micro", None),
            ("m5.large", None),
            ("inf2.xlarge", None),
            ("m7i-flex.large", None),
        ] {
            assert_eq!(screenshot_unsupported(t), why, "{t}");
        }
    }
}
