//! The online consistent-cut algorithm (see DESIGN.md "Consistency algorithm").
