//! A typed context with serde attributes; the schema comes from the type.

use tasker::prelude::*;

/// The context.
#[tasker::data]
#[serde(rename_all = "camelCase")]
pub struct OrderContext {
    /// The order.
    pub order_id: i64,
    /// Optional coupon.
    #[serde(default)]
    pub coupon_code: Option<String>,
}

/// Holds state, so it is handed to the builder.
pub struct Flow {
    pub fee: i64,
}

/// Charges an order.
#[task_handler(name = "charge", namespace = "shop", version = "1.0.0-rc.1", context = OrderContext)]
impl Flow {
    #[step]
    async fn charge(&self, cx: &StepContext<OrderContext>) -> Result<i64, StepError> {
        Ok(cx.context().order_id + self.fee)
    }
}

#[test]
fn the_schema_and_the_request_follow_the_serde_attributes() {
    let template = <Flow as TaskHandler>::template(None).expect("template");
    let schema = template.schema.expect("schema");
    assert!(schema["properties"]["orderId"].is_object(), "{schema}");
    assert_eq!(template.description.as_deref(), Some("Charges an order."));
    let request = TaskRequest::of::<Flow>(&OrderContext {
        order_id: 1,
        coupon_code: None,
    })
    .expect("request");
    assert_eq!(request.context["orderId"], 1);
}
