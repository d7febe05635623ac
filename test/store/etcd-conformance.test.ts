import { openEtcdStore } from "../../src/store/etcd/etcd-store.js";
import { startEtcd } from "../helpers/etcd-harness.js";
import { conformance } from "./conformance.js";

for (const members of [1, 3] as const) {
  conformance(`etcd (${members} member${members > 1 ? "s" : ""})`, async () => {
    const etcd = await startEtcd({ members });
    return {
      open: () => openEtcdStore({ endpoints: etcd.endpoints }),
      cleanup: () => etcd.stop(),
    };
  });
}
