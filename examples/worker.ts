// A star for create-start-wait.ts: does a little work, reports it, and exits.
let sum = 0;
for (let i = 1; i <= 1_000_000; i++) sum += i % 7;
console.log(`worker ${process.env.CONSTELLATION_STAR_NAME} done: ${sum}`);
