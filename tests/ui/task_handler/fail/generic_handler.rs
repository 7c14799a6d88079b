use tasker::prelude::*;

#[derive(Default)]
struct Flow<T>(T);

#[task_handler(name = "flow")]
impl<T: Send + Sync + 'static> Flow<T> {
    #[step]
    async fn fetch(&self, _cx: &StepContext) -> Result<i64, StepError> {
        Ok(1)
    }
}

fn main() {}
