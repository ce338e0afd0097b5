// layerctl tag: gives an image of the store another name (one image, two
// names: the same id, layers and manifest; rmi of one name keeps the other).
#include <cstdio>

#include "command.hpp"
#include "commit/committer.hpp"
#include "store/store.hpp"
#include "util/error.hpp"

namespace layer::cli {
namespace {

int run_tag(Globals& g, std::vector<std::string>& args) {
  parse_options(args, {}, g);
  if (args.size() < 2) throw UsageError("wants IMAGE and NAME (see 'layerctl tag --help')");
  std::vector<std::string> names;
  for (size_t i = 1; i < args.size(); ++i) {
    try {
      names.push_back(commit::image_name(args[i]));
    } catch (const Error& e) {
      throw UsageError(e.line());
    }
  }
  store::Store st = store::Store::open(g.root, store::LockMode::Shared);
  auto img = st.find_image(args[0]);
  if (!img) throw Error("'" + args[0] + "': no such image");
  if (!img->broken.empty())
    throw Error("'" + args[0] + "': marked broken by fsck --repair (" + img->broken + ")");
  for (const auto& name : names) {
    store::ImageRecord rec = *img;
    rec.ref = name;
    st.put_image(rec);
    if (!g.quiet) std::printf("%s\n", name.c_str());
  }
  return 0;
}

const Command::Register kRegister({
    "tag",
    "give an image another name",
    "Usage: layerctl tag IMAGE NAME [NAME...]\n"
    "\n"
    "Records IMAGE (a name or id in the store) under each NAME as well: one image\n"
    "with several names, the same id, layers and manifest, as 'layerctl images'\n"
    "shows. A NAME without a registry host is local: 'app:1' is localhost/app:1, as\n"
    "podman names it. A NAME that names another image moves to this one.\n"
    "'layerctl rmi NAME' removes one name; the image stays while another has it.\n",
    run_tag,
});

}  // namespace
}  // namespace layer::cli
