//! Loom models of the tree publish/retire protocol (issue 2).
