// A client generated from the served document: `npm run generate` writes `schema.d.ts`, whose
// types include each template's context, so tsc checks the requests below.
import createClient from "openapi-fetch";
import type { paths } from "./schema";

// The `serve` example at its default address, started with `TASKER_API_KEY=k-test`.
const client = createClient<paths>({
  baseUrl: "http://127.0.0.1:3000",
  headers: { "X-API-Key": "k-test" },
});

const created = await client.POST("/tasker/tasks", {
  body: {
    name: "order_process",
    namespace: "ecommerce",
    version: "1.0.0",
    context: { order_id: 1001 },
  },
});
if (!created.data || Array.isArray(created.data)) throw new Error(JSON.stringify(created.error));
console.log(created.response.status, created.data.full_name, created.data.state);

const shown = await client.GET("/tasker/tasks/{id}", {
  params: { path: { id: created.data.task_id }, query: { include_dependencies: true } },
});
console.log(shown.response.status, shown.data?.workflow_steps.map((s) => `${s.name}:${s.state}`).join(" "));

const refused = await client.POST("/tasker/tasks", {
  // @ts-expect-error: the generated type says order_id is a number
  body: { name: "order_process", namespace: "ecommerce", version: "1.0.0", context: { order_id: "x" } },
});
console.log(refused.response.status, refused.error);
