// A chain of 101 steps, each depending on the one before: one over the runtime's
// `MAX_GRAPH_DEPTH` (100, counted in steps); generated, one step per line.
use tasker::prelude::*;

#[derive(Default)]
struct Flow;

#[task_handler(name = "flow")]
impl Flow {
    #[step] async fn s0(&self, _cx: &StepContext) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s0)] async fn s1(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s1)] async fn s2(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s2)] async fn s3(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s3)] async fn s4(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s4)] async fn s5(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s5)] async fn s6(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s6)] async fn s7(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s7)] async fn s8(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s8)] async fn s9(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s9)] async fn s10(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s10)] async fn s11(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s11)] async fn s12(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s12)] async fn s13(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s13)] async fn s14(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s14)] async fn s15(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s15)] async fn s16(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s16)] async fn s17(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s17)] async fn s18(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s18)] async fn s19(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s19)] async fn s20(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s20)] async fn s21(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s21)] async fn s22(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s22)] async fn s23(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s23)] async fn s24(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s24)] async fn s25(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s25)] async fn s26(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s26)] async fn s27(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s27)] async fn s28(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s28)] async fn s29(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s29)] async fn s30(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s30)] async fn s31(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s31)] async fn s32(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s32)] async fn s33(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s33)] async fn s34(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s34)] async fn s35(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s35)] async fn s36(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s36)] async fn s37(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s37)] async fn s38(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s38)] async fn s39(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s39)] async fn s40(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s40)] async fn s41(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s41)] async fn s42(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s42)] async fn s43(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s43)] async fn s44(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s44)] async fn s45(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s45)] async fn s46(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s46)] async fn s47(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s47)] async fn s48(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s48)] async fn s49(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s49)] async fn s50(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s50)] async fn s51(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s51)] async fn s52(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s52)] async fn s53(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s53)] async fn s54(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s54)] async fn s55(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s55)] async fn s56(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s56)] async fn s57(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s57)] async fn s58(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s58)] async fn s59(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s59)] async fn s60(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s60)] async fn s61(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s61)] async fn s62(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s62)] async fn s63(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s63)] async fn s64(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s64)] async fn s65(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s65)] async fn s66(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s66)] async fn s67(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s67)] async fn s68(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s68)] async fn s69(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s69)] async fn s70(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s70)] async fn s71(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s71)] async fn s72(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s72)] async fn s73(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s73)] async fn s74(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s74)] async fn s75(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s75)] async fn s76(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s76)] async fn s77(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s77)] async fn s78(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s78)] async fn s79(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s79)] async fn s80(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s80)] async fn s81(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s81)] async fn s82(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s82)] async fn s83(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s83)] async fn s84(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s84)] async fn s85(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s85)] async fn s86(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s86)] async fn s87(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s87)] async fn s88(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s88)] async fn s89(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s89)] async fn s90(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s90)] async fn s91(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s91)] async fn s92(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s92)] async fn s93(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s93)] async fn s94(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s94)] async fn s95(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s95)] async fn s96(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s96)] async fn s97(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s97)] async fn s98(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s98)] async fn s99(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
    #[step(depends_on = s99)] async fn s100(&self, _cx: &StepContext, _: ()) -> Result<(), StepError> { Ok(()) }
}

fn main() {}
