//! The report as text for people, JSON for programs, and `KEY=VALUE` lines for shells.

use std::fmt::Write as _;

use vduse::DeviceType;

use crate::report::{Report, TypeResult};

/// The report as JSON (schema [`crate::report::SCHEMA_VERSION`]), ending in a newline.
pub fn json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("the report serializes");
    text.push('\n');
    text
}

/// Quotes a value for POSIX shells when it needs quoting.
pub fn shell_quote(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "+-./:=@_,".contains(c);
    if value.chars().all(plain) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

fn types_with(report: &Report, result: &str) -> String {
    DeviceType::ALL
        .iter()
        .filter(|t| {
            report
                .device_type_results
                .get(t.name())
                .is_some_and(|r| r.name() == result)
        })
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `KEY=VALUE` lines a shell can `eval`. Unknown values are empty.
pub fn env(report: &Report) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut put = |key: &str, value: String| lines.push((format!("VDUSE_{key}"), value));
    put("PROBE_SCHEMA", report.schema.to_string());
    put("KERNEL_RELEASE", report.kernel_release.clone());
    put("AVAILABLE", flag(report.available).into());
    put("USABLE", flag(report.usable).into());
    put("MODULE", report.module.state.clone());
    put("CONTROL", report.control.path.clone());
    put("CONTROL_PRESENT", flag(report.control.present).into());
    put(
        "CONTROL_MODE",
        report.control.mode.clone().unwrap_or_default(),
    );
    put(
        "CONTROL_OWNER",
        report.control.owner.clone().unwrap_or_default(),
    );
    put(
        "API_VERSION",
        report
            .api_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
    );
    match &report.features {
        Some(features) => {
            put("FEATURES", features.bits.clone());
            for (bit, name) in vduse::control::KNOWN_FEATURES {
                put(
                    &feature_key(name),
                    flag(features.value & (1 << bit) != 0).into(),
                );
            }
            for name in &features.names {
                if name.starts_with("bit ") {
                    put(&feature_key(name), "1".into());
                }
            }
        }
        None => {
            put("FEATURES", String::new());
            for (_, name) in vduse::control::KNOWN_FEATURES {
                put(&feature_key(name), String::new());
            }
        }
    }
    put(
        "DEVICE_TYPES",
        report
            .device_types
            .as_ref()
            .map(|t| t.join(" "))
            .unwrap_or_default(),
    );
    put(
        "DEVICE_TYPES_UNSUPPORTED",
        types_with(report, "unsupported"),
    );
    put(
        "DEVICE_TYPES_NOT_PERMITTED",
        types_with(report, "not-permitted"),
    );
    for t in DeviceType::ALL {
        let result = report
            .device_type_results
            .get(t.name())
            .map_or("unknown", |r| r.name());
        put(
            &format!("DEVICE_{}", t.name().to_uppercase()),
            result.into(),
        );
    }
    put("VDPA_BUS", flag(report.vdpa_bus.available).into());
    put(
        "VDPA_MGMTDEV",
        flag(report.vdpa_bus.management_device).into(),
    );
    for (driver, loaded) in &report.vdpa_bus.drivers {
        put(
            &format!("DRIVER_{}", driver.to_uppercase()),
            flag(*loaded).into(),
        );
    }
    let names = |keep: &dyn Fn(&crate::report::DeviceReport) -> bool| {
        report
            .devices
            .iter()
            .filter(|d| keep(d))
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
    };
    put("DEVICES", names(&|_| true).join(" "));
    put("ATTACHED_DEVICES", names(&|d| d.attached).join(" "));
    put(
        "ORPHANED_DEVICES",
        names(&|d| d.orphaned == Some(true)).join(" "),
    );
    put("NEEDS_PRIVILEGE", report.needs_privilege.join(" "));
    lines
        .into_iter()
        .fold(String::new(), |mut out, (key, value)| {
            let _ = writeln!(out, "{key}={}", shell_quote(&value));
            out
        })
}

/// `VDUSE_FEATURE_SUSPEND`, `VDUSE_FEATURE_QUEUE_READY`, `VDUSE_FEATURE_BIT_5` (without the
/// `VDUSE_` prefix).
fn feature_key(name: &str) -> String {
    format!("FEATURE_{}", name.to_uppercase().replace(['-', ' '], "_"))
}

fn yes(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// The readable report.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    let unknown = |needs: &str| format!("unknown ({needs})");
    let why_unknown = if report.control.present {
        "needs access to the control device"
    } else {
        "no control device"
    };
    let _ = writeln!(out, "VDUSE on this host");
    let mut row = |label: &str, value: String| {
        let _ = writeln!(out, "  {:<17}{value}", format!("{label}:"));
    };
    row("kernel", report.kernel_release.clone());
    row(
        "available",
        format!(
            "{}{}",
            yes(report.available),
            if report.available && !report.usable {
                " (not usable by this user)"
            } else {
                ""
            }
        ),
    );
    let module = match &report.module.config {
        Some(config) => format!("{} (CONFIG_VDPA_USER {config})", report.module.state),
        None => report.module.state.clone(),
    };
    row("module vduse", module);
    let control = match (&report.control.mode, &report.control.owner) {
        (Some(mode), Some(owner)) => format!(
            "{} (mode {mode}, owner {owner}, {})",
            report.control.path,
            if report.control.usable {
                "usable"
            } else {
                "not usable by this user"
            }
        ),
        _ => format!("{} (missing)", report.control.path),
    };
    row("control device", control);
    row(
        "API version",
        report.api_version.map_or_else(
            || unknown(why_unknown),
            |v| {
                format!(
                    "{v} (this tool speaks up to {})",
                    vduse::control::MAX_API_VERSION
                )
            },
        ),
    );
    row(
        "VDUSE features",
        report.features.as_ref().map_or_else(
            || unknown(why_unknown),
            |f| {
                if f.names.is_empty() {
                    format!("{} (none)", f.bits)
                } else {
                    format!("{} ({})", f.bits, f.names.join(", "))
                }
            },
        ),
    );
    let types = DeviceType::ALL
        .iter()
        .map(|t| {
            let result = report.device_type_results.get(t.name());
            let word = match result {
                Some(TypeResult::Supported) => "yes",
                Some(TypeResult::Unsupported) => "no",
                Some(TypeResult::NotPermitted(_)) => "not permitted",
                Some(TypeResult::Unknown(_)) | None => "unknown",
                Some(TypeResult::Error(_)) => "error",
            };
            format!("{t}: {word}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    row("device types", types);
    let bus = if !report.vdpa_bus.available {
        "no".to_owned()
    } else if report.vdpa_bus.management_device {
        format!(
            "yes, management device vduse (classes: {})",
            report.vdpa_bus.management_classes.join(" ")
        )
    } else {
        "yes, but no vduse management device".to_owned()
    };
    row("vdpa bus", bus);
    let drivers = report
        .vdpa_bus
        .drivers
        .iter()
        .map(|(d, loaded)| format!("{d}: {}", if *loaded { "loaded" } else { "not loaded" }))
        .collect::<Vec<_>>()
        .join(", ");
    row("vdpa drivers", drivers);
    row(
        "devices",
        if report.devices.is_empty() {
            "none".into()
        } else {
            report.devices.len().to_string()
        },
    );

    if !report.devices.is_empty() {
        let _ = writeln!(out, "\nDevices:");
        let header = [
            "NAME",
            "TYPE",
            "ATTACHED",
            "DRIVER",
            "SERVED BY",
            "MSG_TIMEOUT",
            "BOUNCE",
        ];
        let rows: Vec<[String; 7]> = report
            .devices
            .iter()
            .map(|d| {
                let served = match (d.served, d.orphaned) {
                    (_, Some(true)) => "nobody (ORPHANED)".to_owned(),
                    (Some(true), _) => d
                        .served_by
                        .iter()
                        .map(|h| format!("{}[{}]", h.comm, h.pid))
                        .collect::<Vec<_>>()
                        .join(","),
                    (Some(false), _) => "nobody".to_owned(),
                    (None, _) => "unknown".to_owned(),
                };
                [
                    d.name.clone(),
                    d.device_type.clone().unwrap_or_else(|| "-".into()),
                    yes(d.attached).into(),
                    d.driver.clone().unwrap_or_else(|| "-".into()),
                    served,
                    d.msg_timeout
                        .map_or_else(|| "-".into(), |t| format!("{t}s")),
                    d.bounce_size
                        .map_or_else(|| "-".into(), |b| format!("{}M", b >> 20)),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: Vec<&str>| {
            let text: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("  {}\n", text.join("  ").trim_end())
        };
        out.push_str(&line(header.to_vec()));
        for r in &rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
    }
    if !report.needs_privilege.is_empty() {
        let _ = writeln!(
            out,
            "\nNeeds privilege (run as root for these): {}",
            report.needs_privilege.join(", ")
        );
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &report.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("0x3"), "0x3");
        assert_eq!(shell_quote("7.3.4+deb13-amd64"), "7.3.4+deb13-amd64");
        assert_eq!(shell_quote(""), "");
        assert_eq!(shell_quote("block net"), "'block net'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
