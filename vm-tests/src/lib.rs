//! Guest-only tests for lvmsync. Its tests run inside a QEMU guest through `vm-tests/run`;
//! on the host they refuse to run (they fail loudly rather than pass silently).
