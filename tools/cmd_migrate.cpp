// layerctl migrate: converts a store of an older format (1) to format 2.
#include <cstdio>

#include "command.hpp"
#include "store/store.hpp"

namespace layer::cli {
namespace {

int run_migrate(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (!args.empty()) throw UsageError("takes no arguments");
  store::Store st = store::Store::open_for_migration(g.root);
  uint64_t n = st.migrate([&](const Digest& d) {
    if (!g.quiet) std::printf("Converting layer %s\n", d.str().c_str());
  });
  std::printf("Store %s is format 2 (%llu layer%s converted)\n", g.root.c_str(),
              static_cast<unsigned long long>(n), n == 1 ? "" : "s");
  return 0;
}

const Command::Register kRegister({
    "migrate",
    "convert a store of format 1 to format 2 (content objects)",
    "Usage: layerctl migrate [-q]\n"
    "\n"
    "Converts a store of format 1 to format 2 (docs/store-format-2.md): the\n"
    "content of every regular file over 4 KiB moves to a content object under\n"
    "objects/, shared by every layer that holds the same bytes, and the layer\n"
    "keeps a metadata-only entry that names it. Layers are converted one at a\n"
    "time, each rebuilt beside the old one and swapped in atomically; an\n"
    "interrupted migrate is resumed by running it again. The version in\n"
    "store.json changes last, so no other command uses the store until every\n"
    "layer is converted. Takes the store's exclusive lock and refuses while a\n"
    "container is mounted.\n"
    "\n"
    "  -q   print only the summary\n",
    run_migrate,
});

}  // namespace
}  // namespace layer::cli
