//! vduse-probe
