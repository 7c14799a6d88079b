use tasker::prelude::*;

/// The context of a run.
#[tasker::data]
pub struct Report {
    pub day: String,
}

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow", context = Report, schedule = "0 6 * * *", schedule_context = Self::for_slot)]
impl Flow {
    // Returns the day, not the `Report` the workflow's context is.
    fn for_slot(slot: tasker::chrono::DateTime<tasker::chrono::Utc>) -> String {
        slot.date_naive().to_string()
    }

    #[step]
    async fn fetch(&self, _cx: &StepContext<Report>) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
