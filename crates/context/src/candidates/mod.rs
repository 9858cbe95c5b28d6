//! Where the evidence for an alert group may be, found from its entities rather than from label
//! names fixed in advance.

pub mod leads;
pub mod logs;
pub mod metrics;
pub mod pairs;
