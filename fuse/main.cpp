// layerfs: FUSE union filesystem daemon. (Placeholder until the daemon lands.)
#include <cstdio>

int main() {
  std::fprintf(stderr, "layerfs: not built yet\n");
  return 1;
}
