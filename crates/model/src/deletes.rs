//! Deletes captured during sync (issue 13).

text_enum!(
    /// What found a record that Ascend no longer lists for a practice.
    DeleteDetection, "delete detection", {
        /// The reconciliation of the hot window, every incremental cycle
        /// (appointments from 30 days back to a year ahead; patients).
        HotWindow => "hot_window",
        /// The reconciliation of a whole resource, at least once a day.
        Daily => "daily",
        /// The record still exists in the organization, but no longer at
        /// the practice's location (an appointment moved elsewhere).
        LeftScope => "left_scope",
    }
);
