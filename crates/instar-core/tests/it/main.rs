//! Integration tests of instar-core: golden splitter files, layouts, and planner properties.
mod adopted_layouts;
mod fuzz;
mod golden;
mod layouts;
mod planner;
