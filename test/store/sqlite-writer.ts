/**
 * Child process of the kill -9 durability test: puts key i = "value-i" for i = 0, 1, 2, ...
 * and prints "ack <i> <revision>" after each put is acknowledged, until it is killed.
 * argv[2]: database path.
 */
import { writeSync } from "node:fs";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";

const store = new SqliteStore({ path: process.argv[2]!, retainRevisions: 500 });
for (let i = 0; ; i++) {
  const { revision } = await store.put(`durable/${i % 300}`, `value-${i}`);
  // A blocking write: the acknowledgement is out before the next put, and never piles up in memory.
  const line = `ack ${i} ${revision}\n`;
  for (;;) {
    try {
      writeSync(1, line);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
    }
  }
}
