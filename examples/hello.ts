// A star: prints a line every 2 seconds until it is stopped (SIGTERM ends it cleanly).
const who: string = process.env.WHO ?? "world";
let n = 0;
console.log(`hello ${who}, from a star (pid ${process.pid} in its own namespace)`);
const timer = setInterval(() => console.log(`tick ${++n}`), 2000);
process.on("SIGTERM", () => {
  clearInterval(timer);
  console.log("stopping: bye");
});
