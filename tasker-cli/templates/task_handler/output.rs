
/// What `{{step}}` hands to the steps that depend on it.
#[tasker::data]
#[derive(Debug, Clone, PartialEq)]
pub struct {{output_type}} {
    /// Replace with what `{{step}}` produces.
    pub id: i64,
}
