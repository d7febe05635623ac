// A small Node star: print a ready line, then idle.
console.log("ready");
setInterval(() => {}, 1 << 30);
