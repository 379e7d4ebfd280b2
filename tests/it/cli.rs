//! The real binary as a child process.
