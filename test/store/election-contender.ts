/**
 * One contender of the multi-process election test. Campaigns, and while it leads writes a
 * fenced counter every few ms; reports each step as a JSON line on stdout:
 *   {"event":"leader","token":T,"wonAt":R,"key":K}  {"event":"write","token":T,"rev":R}
 *   {"event":"rejected","token":T}  (the store refused a write: leadership had ended)
 * argv[2]: JSON { store: StoreConfig, election: string, ttl: number, workKey: string }
 */
import { setTimeout as delay } from "node:timers/promises";
import { NotLeaderError } from "../../src/model/errors.js";
import { Election } from "../../src/store/election.js";
import { type StoreConfig, openStore } from "../../src/store/open.js";

const cfg = JSON.parse(process.argv[2]!) as { store: StoreConfig; election: string; ttl: number; workKey: string };
const say = (o: object) => process.stdout.write(`${JSON.stringify({ pid: process.pid, ...o })}\n`);

const store = await openStore(cfg.store);
const election = new Election(store, cfg.election, { ttl: cfg.ttl });
say({ event: "started" });
for (;;) {
  const leadership = await election.campaign(`pid-${process.pid}`);
  say({ event: "leader", token: leadership.token, wonAt: leadership.wonAt, key: leadership.key });
  // Keep writing even after `lost` fires: the store, not our own view, must stop a stale leader.
  for (let n = 0; ; n++) {
    try {
      const res = await leadership.txn({
        success: [{ type: "put", key: cfg.workKey, value: JSON.stringify({ pid: process.pid, token: leadership.token, n }) }],
      });
      say({ event: "write", token: leadership.token, rev: res.revision });
    } catch (err) {
      if (!(err instanceof NotLeaderError)) throw err;
      say({ event: "rejected", token: leadership.token });
      break;
    }
    await delay(20);
  }
}
