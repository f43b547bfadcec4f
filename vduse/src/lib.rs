//! Userspace side of Linux VDUSE (vDPA Device in Userspace).
