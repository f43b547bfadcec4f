//! `--require EXPR`: conditions on the report for scripts and packaging.

use std::fmt;
use std::str::FromStr;

use vduse::DeviceType;
use vduse::control::KNOWN_FEATURES;

use crate::report::{Report, VDPA_DRIVERS};

/// The forms an expression can take, for error messages and `--help`.
pub const FORMS: &str = "available, usable, api-version OP N (OP one of >= > <= < = !=), \
    feature=NAME (queue-ready, suspend, or bit-N), device=TYPE (block, net, fs), vdpa-bus, \
    driver=NAME (virtio_vdpa, vhost_vdpa)";

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    fn holds(self, left: u64, right: u64) -> bool {
        match self {
            Op::Ge => left >= right,
            Op::Gt => left > right,
            Op::Le => left <= right,
            Op::Lt => left < right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }
}

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// VDUSE is present.
    Available,
    /// The caller can use the control device.
    Usable,
    /// The kernel's API version compares to a number.
    ApiVersion(Op, u64),
    /// The kernel has a VDUSE feature bit.
    Feature(u32),
    /// The kernel accepts a device type.
    Device(DeviceType),
    /// The vdpa bus and its `vduse` management device exist.
    VdpaBus,
    /// A vdpa bus driver is loaded.
    Driver(String),
}

/// A malformed expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid requirement {expr:?}: {reason}; expected one of: {FORMS}")]
pub struct ParseError {
    /// The expression.
    pub expr: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Requirement {
    type Err = ParseError;

    fn from_str(expr: &str) -> Result<Self, ParseError> {
        let fail = |reason: String| ParseError {
            expr: expr.to_owned(),
            reason,
        };
        let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        match compact.as_str() {
            "available" => return Ok(Requirement::Available),
            "usable" => return Ok(Requirement::Usable),
            "vdpa-bus" => return Ok(Requirement::VdpaBus),
            "" => return Err(fail("it is empty".into())),
            _ => {}
        }
        if let Some(rest) = compact.strip_prefix("api-version") {
            let ops = [
                ("==", Op::Eq),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
            ]
            .into_iter()
            .chain([(">", Op::Gt), ("<", Op::Lt), ("=", Op::Eq)]);
            for (symbol, op) in ops {
                if let Some(number) = rest.strip_prefix(symbol) {
                    let value = number
                        .parse()
                        .map_err(|_| fail(format!("{number:?} is not a version number")))?;
                    return Ok(Requirement::ApiVersion(op, value));
                }
            }
            return Err(fail(
                "api-version needs a comparison such as api-version>=1".into(),
            ));
        }
        let Some((key, value)) = compact.split_once('=') else {
            return Err(fail("unknown requirement".into()));
        };
        match key {
            "feature" => parse_feature(value)
                .map(Requirement::Feature)
                .ok_or_else(|| fail(format!("unknown VDUSE feature {value:?}"))),
            "device" => DeviceType::from_name(value)
                .map(Requirement::Device)
                .ok_or_else(|| fail(format!("unknown device type {value:?}"))),
            "driver" => {
                let driver = value.replace('-', "_");
                if VDPA_DRIVERS.contains(&driver.as_str()) {
                    Ok(Requirement::Driver(driver))
                } else {
                    Err(fail(format!("unknown vdpa driver {value:?}")))
                }
            }
            _ => Err(fail(format!("unknown key {key:?}"))),
        }
    }
}

fn parse_feature(value: &str) -> Option<u32> {
    let normalized = value.to_ascii_lowercase().replace('_', "-");
    if let Some((bit, _)) = KNOWN_FEATURES.iter().find(|(_, name)| *name == normalized) {
        return Some(*bit);
    }
    let number = normalized
        .strip_prefix("bit-")
        .or(normalized.strip_prefix("bit"))?;
    number.parse().ok().filter(|&bit| bit < 64)
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Available => f.write_str("available"),
            Requirement::Usable => f.write_str("usable"),
            Requirement::ApiVersion(op, n) => write!(f, "api-version{}{n}", op.symbol()),
            Requirement::Feature(bit) => {
                write!(f, "feature={}", vduse::feature_name(*bit).replace(' ', "-"))
            }
            Requirement::Device(t) => write!(f, "device={t}"),
            Requirement::VdpaBus => f.write_str("vdpa-bus"),
            Requirement::Driver(d) => write!(f, "driver={d}"),
        }
    }
}

impl Requirement {
    /// `None` when the requirement holds, else why it does not.
    pub fn unmet(&self, report: &Report) -> Option<String> {
        let unknown = |what: &str| {
            let why = report
                .control
                .error
                .as_deref()
                .unwrap_or("VDUSE is not available");
            Some(format!("{what} unknown: {why}"))
        };
        match self {
            Requirement::Available => {
                (!report.available).then(|| "VDUSE is not available on this host".to_owned())
            }
            Requirement::Usable => (!report.usable).then(|| {
                report
                    .control
                    .error
                    .clone()
                    .unwrap_or_else(|| "control device unusable".into())
            }),
            Requirement::ApiVersion(op, wanted) => match report.api_version {
                None => unknown("API version"),
                Some(v) if op.holds(v, *wanted) => None,
                Some(v) => Some(format!("the kernel's API version is {v}")),
            },
            Requirement::Feature(bit) => match &report.features {
                None => unknown("VDUSE features"),
                Some(f) if f.value & (1 << bit) != 0 => None,
                Some(f) => Some(format!("the kernel's VDUSE features are {}", f.bits)),
            },
            Requirement::Device(t) => match report.device_type_results.get(t.name()) {
                Some(crate::report::TypeResult::Supported) => None,
                Some(result) => Some(format!("{t} devices: {}", describe(result))),
                None => unknown("device types"),
            },
            Requirement::VdpaBus => {
                if report.vdpa_bus.management_device {
                    None
                } else if report.vdpa_bus.available {
                    Some("the vdpa bus has no vduse management device".into())
                } else {
                    Some(
                        report
                            .vdpa_bus
                            .error
                            .clone()
                            .unwrap_or_else(|| "no vdpa bus".into()),
                    )
                }
            }
            Requirement::Driver(d) => (!report.vdpa_bus.drivers.get(d).copied().unwrap_or(false))
                .then(|| format!("{d} is not loaded (modprobe {d})")),
        }
    }
}

fn describe(result: &crate::report::TypeResult) -> String {
    use crate::report::TypeResult;
    match result {
        TypeResult::Supported => "supported".into(),
        TypeResult::Unsupported => "not supported by this kernel".into(),
        TypeResult::NotPermitted(why) | TypeResult::Unknown(why) | TypeResult::Error(why) => {
            format!("{}: {why}", result.name())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(expr: &str) -> Result<Requirement, ParseError> {
        expr.parse()
    }

    #[test]
    fn good_expressions_parse() {
        assert_eq!(
            parse("api-version>=1"),
            Ok(Requirement::ApiVersion(Op::Ge, 1))
        );
        assert_eq!(
            parse("api-version >= 1"),
            Ok(Requirement::ApiVersion(Op::Ge, 1))
        );
        assert_eq!(
            parse("api-version=0"),
            Ok(Requirement::ApiVersion(Op::Eq, 0))
        );
        assert_eq!(
            parse("api-version==0"),
            Ok(Requirement::ApiVersion(Op::Eq, 0))
        );
        assert_eq!(
            parse("api-version>0"),
            Ok(Requirement::ApiVersion(Op::Gt, 0))
        );
        assert_eq!(
            parse("api-version<2"),
            Ok(Requirement::ApiVersion(Op::Lt, 2))
        );
        assert_eq!(
            parse("api-version!=1"),
            Ok(Requirement::ApiVersion(Op::Ne, 1))
        );
        assert_eq!(parse("feature=suspend"), Ok(Requirement::Feature(1)));
        assert_eq!(parse("feature=queue-ready"), Ok(Requirement::Feature(0)));
        assert_eq!(parse("feature=QUEUE_READY"), Ok(Requirement::Feature(0)));
        assert_eq!(parse("feature=bit-5"), Ok(Requirement::Feature(5)));
        assert_eq!(parse("feature=bit5"), Ok(Requirement::Feature(5)));
        assert_eq!(parse("device=fs"), Ok(Requirement::Device(DeviceType::Fs)));
        assert_eq!(parse("vdpa-bus"), Ok(Requirement::VdpaBus));
        assert_eq!(
            parse("driver=virtio_vdpa"),
            Ok(Requirement::Driver("virtio_vdpa".into()))
        );
        assert_eq!(
            parse("driver=vhost-vdpa"),
            Ok(Requirement::Driver("vhost_vdpa".into()))
        );
        assert_eq!(parse("available"), Ok(Requirement::Available));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("api-version", "needs a comparison"),
            ("api-version>=x", "\"x\" is not a version number"),
            ("api-version>=-1", "not a version number"),
            ("api-version=>1", "not a version number"),
            ("feature=turbo", "unknown VDUSE feature \"turbo\""),
            ("feature=bit-64", "unknown VDUSE feature"),
            ("device=scsi", "unknown device type \"scsi\""),
            ("driver=nvme", "unknown vdpa driver"),
            ("colour=blue", "unknown key \"colour\""),
            ("vdpa", "unknown requirement"),
        ];
        for (expr, reason) in cases {
            let err = parse(expr).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(reason), "{expr}: {message}");
            assert!(message.contains("expected one of"), "{expr}: {message}");
        }
    }

    #[test]
    fn requirements_print_as_they_parse() {
        for expr in [
            "api-version>=1",
            "feature=suspend",
            "feature=bit-7",
            "device=net",
            "vdpa-bus",
        ] {
            assert_eq!(parse(expr).unwrap().to_string(), expr);
        }
    }
}
