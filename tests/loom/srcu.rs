//! Loom models of the Srcu domain (issue 3).
