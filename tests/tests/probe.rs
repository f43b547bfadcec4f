//! `vduse-probe` on the real kernels of the matrix: its JSON, env output and exit codes
//! must equal the matrix of docs/kernel-facts.md (section 1), as root and as an
//! unprivileged user; an interrupted probe leaves no device behind; existing devices are
//! reported with who serves them, and `vduse-probe remove` removes the orphaned and
//! unattached ones but refuses a served one.
//!
//! One boot per kernel runs the steps of `tests/scenarios/probe/` (on 6.1, which has no
//! VDUSE, those of `tests/scenarios/probe-without-vduse/`), each checked by the function
//! of the same name below.

use std::time::Duration;

use serde_json::{Value, json};
use vduse_tests::{Boot, Guest, GuestRun, Kernel, Scenario, Step, kernel_tests, step};

/// What a kernel supports, as docs/kernel-facts.md's matrix (section 1) says.
struct Expected {
    api_version: u64,
    features: &'static str,
    feature_names: &'static [&'static str],
    device_types: &'static [&'static str],
}

fn expected(series: &str) -> Expected {
    match series {
        "6.12" => Expected {
            api_version: 0,
            features: "0x0",
            feature_names: &[],
            device_types: &["block", "net"],
        },
        "7.2" => Expected {
            api_version: 1,
            features: "0x0",
            feature_names: &[],
            device_types: &["block", "net", "fs"],
        },
        "7.3" => Expected {
            api_version: 1,
            features: "0x3",
            feature_names: &["queue-ready", "suspend"],
            device_types: &["block", "net", "fs"],
        },
        other => panic!("no expectations for {other}"),
    }
}

const STEPS: &[Step] = &[
    step!("probe/01-setup.sh", setup),
    step!("probe/02-unloaded.sh", unloaded),
    step!("probe/03-root.sh", root),
    step!("probe/04-requirements.sh", requirements),
    step!("probe/05-unprivileged.sh", unprivileged),
    step!("probe/06-interrupted.sh", interrupted),
    step!("probe/07-killed.sh", killed),
    step!("probe/08-devices.sh", devices),
];

/// The steps on a kernel without VDUSE.
const STEPS_WITHOUT_VDUSE: &[Step] = &[step!("probe-without-vduse/01-probe.sh", no_vduse)];

fn probe(series: &str) {
    let kernel = Kernel::load(series);
    let steps = if kernel.has_module("vduse") {
        STEPS
    } else {
        STEPS_WITHOUT_VDUSE
    };
    let mut guest = Guest::new(&kernel);
    // Where Debian installs it, for the probe's CONFIG_VDPA_USER line.
    if let Some(config) = kernel.config_file() {
        guest = guest.file(config, &format!("/boot/config-{}", kernel.release()));
    }
    let guest = guest
        .binary("vduse-probe")
        .binary("vduse-testdev")
        .host_program("setpriv")
        .host_program("vdpa")
        .timeout(Duration::from_secs(300));
    Scenario::new(guest).steps(steps).run();
}

kernel_tests!(probe: linux_6_1, linux_6_12, linux_7_2, linux_7_3);

fn env_lines(run: &GuestRun, name: &str) -> Vec<String> {
    run.out(name).lines().map(str::to_owned).collect()
}

fn assert_env(run: &GuestRun, name: &str, expected: &[&str]) {
    let lines = env_lines(run, name);
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "{name}: no line {line:?} in\n{}",
            run.report(name)
        );
    }
}

fn only_control(run: &GuestRun, name: &str) {
    assert_eq!(
        run.text(name).split_whitespace().collect::<Vec<_>>(),
        ["control"],
        "{name}"
    );
}

fn device<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["devices"]
        .as_array()
        .and_then(|devices| devices.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no device {name} in {report:#}"))
}

/// `as_nobody`: nothing to check.
fn setup(_: &Boot) {}

fn unloaded(run: &Boot) {
    // Module present but not loaded: EX_UNAVAILABLE, and the fix is named.
    run.assert_rc("unloaded", 69);
    let unloaded = run.json("unloaded");
    assert_eq!(unloaded["available"], false);
    assert_eq!(unloaded["module"]["state"], "available", "{unloaded:#}");
    assert!(
        unloaded["notes"].to_string().contains("modprobe vduse"),
        "{unloaded:#}"
    );
    run.assert_rc("unloaded-require", 1);
    assert!(
        run.err("unloaded-require")
            .contains("requirement not met: available")
    );
}

fn root(run: &Boot) {
    let want = expected(run.series());
    let types_word = want.device_types.join(" ");
    // Root: the matrix.
    run.assert_success("root-json");
    let report = run.json("root-json");
    assert_eq!(report["schema"], 1);
    assert_eq!(report["kernel_release"], run.kernel().release());
    assert_eq!(report["available"], true);
    assert_eq!(report["usable"], true);
    assert_eq!(report["module"]["state"], "loaded");
    assert_eq!(report["control"]["mode"], "0600");
    assert_eq!(report["control"]["owner"], "root:root");
    assert_eq!(report["api_version"], want.api_version);
    assert_eq!(report["features"]["bits"], want.features);
    assert_eq!(report["features"]["names"], json!(want.feature_names));
    assert_eq!(
        report["device_types"],
        json!(want.device_types),
        "{report:#}"
    );
    for t in ["block", "net", "fs"] {
        let result = &report["device_type_results"][t]["result"];
        let supported = want.device_types.contains(&t);
        assert_eq!(
            result,
            if supported {
                "supported"
            } else {
                "unsupported"
            },
            "{t}"
        );
    }
    assert_eq!(report["vdpa_bus"]["available"], true);
    assert_eq!(report["vdpa_bus"]["management_device"], true);
    assert_eq!(
        report["vdpa_bus"]["management_classes"],
        json!(["block", "net"])
    );
    assert_eq!(
        report["vdpa_bus"]["drivers"],
        json!({"vhost_vdpa": true, "virtio_vdpa": false})
    );
    assert_eq!(report["devices"], json!([]));

    run.assert_success("root-env");
    let api = format!("VDUSE_API_VERSION={}", want.api_version);
    let features = format!("VDUSE_FEATURES={}", want.features);
    let types = if want.device_types.len() > 1 {
        format!("VDUSE_DEVICE_TYPES='{types_word}'")
    } else {
        format!("VDUSE_DEVICE_TYPES={types_word}")
    };
    let suspend = format!("VDUSE_FEATURE_SUSPEND={}", u8::from(want.features == "0x3"));
    assert_env(
        run,
        "root-env",
        &[
            "VDUSE_AVAILABLE=1",
            "VDUSE_USABLE=1",
            &api,
            &features,
            &suspend,
            &types,
        ],
    );
    run.assert_success("root-human");
    run.assert_out_contains(
        "root-human",
        &format!("API version:     {}", want.api_version),
    );

    run.assert_success("get-api");
    assert_eq!(run.out("get-api"), format!("{}\n", want.api_version));
    assert_eq!(run.out("get-features"), format!("{}\n", want.features));
    assert_eq!(run.out("get-types"), format!("{types_word}\n"));
}

fn requirements(run: &Boot) {
    // Requirements.
    run.assert_rc("req-all", 0);
    assert_eq!(run.out("req-all"), "", "-q prints nothing");
    run.assert_rc("req-new", if run.series() == "7.3" { 0 } else { 1 });
    if run.series() == "6.12" {
        assert!(
            run.err("req-new").contains("api-version>=1"),
            "{}",
            run.report("req-new")
        );
        assert!(
            run.err("req-new").contains("device=fs"),
            "{}",
            run.report("req-new")
        );
    }
    run.assert_rc("req-unmet", 1);
    assert!(
        run.err("req-unmet")
            .contains("driver=virtio_vdpa: virtio_vdpa is not loaded")
    );
    assert!(run.err("req-unmet").contains("api-version>5"));
    run.assert_rc("req-bad", 64);
    assert!(
        run.err("req-bad")
            .contains("invalid requirement \"api-version>>1\"")
    );
    run.assert_rc("bad-flag", 64);
    run.assert_success("no-create");
    assert_eq!(run.json("no-create")["device_types"], Value::Null);
}

fn unprivileged(run: &Boot) {
    let want = expected(run.series());
    // Unprivileged: EX_NOPERM, and the answers that need privilege are named.
    run.assert_rc("user-json", 77);
    let user = run.json("user-json");
    assert_eq!(user["available"], true);
    assert_eq!(user["usable"], false);
    assert_eq!(user["api_version"], Value::Null);
    assert_eq!(user["features"], Value::Null);
    assert!(
        user["control"]["error"]
            .as_str()
            .unwrap()
            .contains("permission denied")
    );
    assert_eq!(
        user["needs_privilege"],
        json!(["api_version", "features", "device_types"])
    );
    assert_eq!(
        user["vdpa_bus"]["management_device"], true,
        "dumps need no privilege"
    );
    run.assert_rc("user-get", 77);
    assert_eq!(run.out("user-get"), "");
    assert!(
        run.err("user-get").contains("run as root"),
        "{}",
        run.report("user-get")
    );
    assert_env(
        run,
        "user-env",
        &["VDUSE_AVAILABLE=1", "VDUSE_USABLE=0", "VDUSE_API_VERSION="],
    );

    // Access to the control device without CAP_NET_ADMIN: net is not permitted, which is
    // not the same as unsupported.
    run.assert_success("group-json");
    let group = run.json("group-json");
    assert_eq!(group["api_version"], want.api_version);
    assert_eq!(
        group["device_type_results"]["net"]["result"], "not-permitted",
        "{group:#}"
    );
    assert!(
        group["device_type_results"]["net"]["detail"]
            .to_string()
            .contains("CAP_NET_ADMIN")
    );
    let without_net: Vec<&str> = want
        .device_types
        .iter()
        .copied()
        .filter(|t| *t != "net")
        .collect();
    assert_eq!(group["device_types"], json!(without_net));
}

fn interrupted(run: &Boot) {
    // Interruption leaves nothing behind.
    for (sig, rc) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let during = run.text(&format!("int-{sig}.during"));
        assert!(
            during.contains("vduse-probe-"),
            "SIG{sig}: no probe device while holding"
        );
        assert_eq!(
            run.text(&format!("int-{sig}.rc")).trim(),
            rc.to_string(),
            "SIG{sig}"
        );
        assert!(
            run.text(&format!("int-{sig}.err"))
                .contains("every throwaway device was removed")
        );
        only_control(run, &format!("int-{sig}.after"));
    }
    let random = run.text("random.rcs");
    assert_eq!(random.lines().count(), 25);
    for line in random.lines() {
        let rc = line.split_whitespace().nth(1).unwrap();
        assert!(
            rc == "0" || rc == "130",
            "random interrupt: exit status {line}"
        );
    }
    only_control(run, "random.after");
    assert_eq!(
        run.text("random.class")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["control"]
    );
}

fn killed(run: &Boot) {
    // A SIGKILLed probe leaves its device; the next run removes it.
    assert!(
        run.text("killed.during").contains("vduse-probe-"),
        "SIGKILL left nothing?"
    );
    run.assert_success("after-kill");
    let after_kill = run.json("after-kill");
    assert!(
        after_kill["notes"]
            .to_string()
            .contains("left by a vduse-probe that was killed"),
        "{after_kill:#}"
    );
    only_control(run, "killed.after");
}

fn devices(run: &Boot) {
    // Existing devices.
    for step in [
        "served-ready",
        "create-ghost",
        "attach-ghost",
        "create-spare",
    ] {
        run.assert_success(step);
    }
    run.assert_success("devices-json");
    let devices = run.json("devices-json");
    let served = device(&devices, "served");
    assert_eq!(served["type"], "block");
    assert_eq!(served["attached"], true);
    assert_eq!(served["driver"], "vhost_vdpa");
    assert_eq!(served["served"], true);
    assert_eq!(served["served_by"][0]["comm"], "vduse-testdev");
    assert_eq!(served["orphaned"], false);
    assert_eq!(served["msg_timeout"], 30);
    assert_eq!(served["bounce_size"], 64 << 20);
    let ghost = device(&devices, "ghost");
    assert_eq!(ghost["attached"], true);
    assert_eq!(ghost["served"], false);
    assert_eq!(ghost["orphaned"], true);
    assert_eq!(ghost["msg_timeout"], 2);
    assert!(
        devices["notes"]
            .to_string()
            .contains("device ghost is attached"),
        "{devices:#}"
    );
    let spare = device(&devices, "spare");
    assert_eq!(spare["attached"], false);
    assert_eq!(spare["type"], Value::Null);
    assert_eq!(spare["orphaned"], false);
    assert_env(
        run,
        "devices-env",
        &[
            "VDUSE_DEVICES='ghost served spare'",
            "VDUSE_ORPHANED_DEVICES=ghost",
        ],
    );
    run.assert_out_contains("devices-human", "nobody (ORPHANED)");
    assert_eq!(run.out("devices-get"), "ghost\n");
    // Without root other users' processes are hidden: served is unknown, not "nobody".
    let user_devices = run.json("devices-user");
    assert_eq!(device(&user_devices, "ghost")["orphaned"], Value::Null);
    assert_eq!(device(&user_devices, "served")["driver"], "vhost_vdpa");
    run.assert_rc("remove-refused", 1);
    assert!(
        run.err("remove-refused")
            .contains("served is served by process")
            && run.err("remove-refused").contains("(vduse-testdev)"),
        "{}",
        run.report("remove-refused")
    );
    run.assert_rc("remove-none", 1);
    assert!(
        run.err("remove-none")
            .contains("there is no VDUSE device named nosuch"),
        "{}",
        run.report("remove-none")
    );
    run.assert_rc("remove-user", 77);
    for step in [
        "remove-served",
        "remove-ghost",
        "remove-spare",
        "after-remove-vdpa",
    ] {
        run.assert_success(step);
    }
    assert_eq!(
        run.out("remove-ghost"),
        "ghost: detached it from the vdpa bus, destroyed it\n"
    );
    assert_eq!(run.out("remove-spare"), "spare: destroyed it\n");
    assert_eq!(run.out("after-remove-vdpa").trim(), "");
    only_control(run, "final");
}

/// 6.1 has no VDUSE: every output says so, with the reason.
fn no_vduse(run: &Boot) {
    run.assert_rc("json", 69);
    let report = run.json("json");
    assert_eq!(report["kernel_release"], run.kernel().release());
    assert_eq!(report["available"], false);
    assert_eq!(report["module"]["state"], "absent");
    assert_eq!(report["module"]["config"], "not set");
    assert_eq!(report["api_version"], Value::Null);
    assert_eq!(report["device_types"], Value::Null);
    assert_eq!(report["vdpa_bus"]["available"], false);
    assert!(
        report["notes"].to_string().contains("CONFIG_VDPA_USER"),
        "{report:#}"
    );
    run.assert_rc("env", 69);
    assert_env(
        run,
        "env",
        &[
            "VDUSE_AVAILABLE=0",
            "VDUSE_MODULE=absent",
            "VDUSE_API_VERSION=",
        ],
    );
    run.assert_rc("human", 69);
    run.assert_out_contains("human", "available:       no");
    run.assert_success("get-available");
    assert_eq!(run.out("get-available"), "0\n");
    run.assert_rc("get-api", 69);
    run.assert_rc("require", 1);
    assert_ne!(run.rc("modprobe"), 0, "6.1 has no vduse module");
}
