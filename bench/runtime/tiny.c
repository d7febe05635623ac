/* The smallest long-running program: print a ready line, then block forever. */
#include <unistd.h>
int main(void) {
  (void)!write(1, "ready\n", 6);
  for (;;) pause();
}
