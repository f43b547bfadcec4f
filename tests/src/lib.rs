//! Real-kernel test harness.
