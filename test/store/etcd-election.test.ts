import { startEtcd } from "../helpers/etcd-harness.js";
import { electionSuite } from "./election-suite.js";

electionSuite("etcd (one member)", async () => {
  const etcd = await startEtcd({ members: 1 });
  return { config: { backend: "etcd", endpoints: etcd.endpoints }, cleanup: () => etcd.stop() };
});
