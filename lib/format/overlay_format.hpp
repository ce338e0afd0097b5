// The overlay on-disk format: how a layer tree, an upper directory and an OCI
// layer tar mark whiteouts, opaque directories, redirects and the rest, and
// the xattr names that carry them. The one place in the sources that spells
// these names; lib/unpack writes the format, lib/overlay serves and changes
// it, lib/commit turns it back into a tar, lib/pull reads it. Stateless and
// thread-safe.
//
// The kernel's overlayfs keeps its markers in trusted.overlay.* (needs
// CAP_SYS_ADMIN) or, with -o userxattr (rootless), in user.overlay.*; readers
// here honour both, trusted first. layerfs adds names of its own below the
// same prefix ("layerfs."), and fuse-overlayfs's xattr_permissions keeps
// owner and mode in a name of its own.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer {
class XattrPath;
}

namespace layer::format {

// ---------------------------------------------------------------- OCI names

// In a layer tar (and tolerated in a lower layer's tree): "<prefix>NAME"
// removes NAME of the layers below; the marker makes its directory opaque.
inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// ---------------------------------------------------------------- xattrs

enum class XattrNamespace { kTrusted, kUser };

// The names of one namespace. Every view is of a NUL-terminated literal, so
// `.data()` may be passed to the xattr syscalls.
struct XattrNames {
  std::string_view prefix;
  std::string_view opaque;               // "y": opaque; "x": may hold xattr whiteouts
  std::string_view redirect;             // the kernel's redirect_dir: where a directory came from
  std::string_view whiteout;             // on a zero-size file: a whiteout (rootless)
  std::string_view whiteouts;            // the kernel's older name for the "x" mark
  std::string_view origin;               // the kernel's file handle of a copy-up's lower
  std::string_view metacopy;             // the kernel's metadata-only copy-up
  std::string_view impure;               // "y": the directory holds copied-up entries
  std::string_view nlink;                // the kernel's index link count
  std::string_view upper;                // the kernel's index: the upper's file handle
  std::string_view own;                  // layerfs's names below the prefix start with this
  std::string_view layerfs_origin;       // a copy-up's original inode number
  std::string_view layerfs_lower_names;  // old layerfs-index entry: names still only below
  std::string_view layerfs_partial;      // a lazy copy-up not yet filled
  std::string_view layerfs_probe;        // set and removed once to test trusted.*
};

inline constexpr XattrNames kTrusted{"trusted.overlay.",
                                     "trusted.overlay.opaque",
                                     "trusted.overlay.redirect",
                                     "trusted.overlay.whiteout",
                                     "trusted.overlay.whiteouts",
                                     "trusted.overlay.origin",
                                     "trusted.overlay.metacopy",
                                     "trusted.overlay.impure",
                                     "trusted.overlay.nlink",
                                     "trusted.overlay.upper",
                                     "trusted.overlay.layerfs.",
                                     "trusted.overlay.layerfs.origin",
                                     "trusted.overlay.layerfs.lowernames",
                                     "trusted.overlay.layerfs.partial",
                                     "trusted.overlay.layerfs.probe"};
inline constexpr XattrNames kUser{"user.overlay.",
                                  "user.overlay.opaque",
                                  "user.overlay.redirect",
                                  "user.overlay.whiteout",
                                  "user.overlay.whiteouts",
                                  "user.overlay.origin",
                                  "user.overlay.metacopy",
                                  "user.overlay.impure",
                                  "user.overlay.nlink",
                                  "user.overlay.upper",
                                  "user.overlay.layerfs.",
                                  "user.overlay.layerfs.origin",
                                  "user.overlay.layerfs.lowernames",
                                  "user.overlay.layerfs.partial",
                                  "user.overlay.layerfs.probe"};
// Readers look in this order: trusted wins.
inline constexpr const XattrNames* kNamespaces[] = {&kTrusted, &kUser};

constexpr const XattrNames& names(XattrNamespace ns) {
  return ns == XattrNamespace::kUser ? kUser : kTrusted;
}

// fuse-overlayfs's xattr_permissions=1 and =2: "UID:GID:MODE" (host ids,
// octal mode) of a file whose real inode cannot carry them.
inline constexpr std::string_view kPermXattrSecurity = "security.fuseoverlayfs.override_stat";
inline constexpr std::string_view kPermXattrUser = "user.fuseoverlayfs.override_stat";
// Everything fuse-overlayfs keeps below these (override_stat, origin, opaque,
// ...) is its own, hidden from programs as fuse-overlayfs hides it.
inline constexpr std::string_view kFuseOverlayfsPrefixes[] = {
    "user.fuseoverlayfs.", "trusted.fuseoverlayfs.", "security.fuseoverlayfs."};

// Whether `name` is one the format itself uses, in either namespace: the
// kernel's markers, layerfs's own names and fuse-overlayfs's. A program
// working through a mount must neither read nor set these.
bool is_private_xattr(std::string_view name);

// An image's own xattr named like an overlay one, "<prefix>X", is kept on
// disk escaped as "<prefix>overlay.X" (as the kernel stores it); any other
// name is unchanged.
std::string escape_xattr_name(std::string_view name);
// Whether `stored` is such an escaped name in namespace `ns`.
bool is_escaped_xattr(std::string_view stored, XattrNamespace ns);
// The name a stored xattr has for a program (or in a tar): the escaped form
// is "<prefix>X" again; any other "<prefix>..." is the format's own (nullopt).
std::optional<std::string> unescape_xattr_name(std::string_view stored);

// ---------------------------------------------------------------- index

// The kernel's index=on, which layerfs keeps the same way: a lower file with
// several names, copied up through one, gets the entry
// workdir/<kIndexDir>/<index_name(origin)>, a hard link to its upper copy.
// The copy (so the entry too, one inode) carries the origin handle in the
// origin xattr and the link count every name sees in the nlink xattr.
inline constexpr const char* kIndexDir = "index";
// layerfs's own index before it took the kernel's format: entries named
// after the origin's inode number; read only to move them into kIndexDir.
inline constexpr const char* kLegacyIndexDir = "layerfs-index";

// The kernel's encoded origin file handle (struct ovl_fb: version 0, magic
// 0xfb, length, flags, handle type, the uuid of the file's filesystem, then
// the handle's bytes from name_to_handle_at) of the object (dirfd, name).
// The uuid is FS_IOC_GETFSUUID's; a filesystem (or kernel, before 6.5)
// without one gets the null uuid, as the kernel's own handles then have.
// EOPNOTSUPP: the filesystem has no file handles (nothing can be indexed).
Result<std::string> origin_handle(int dirfd, const char* name);
// The object an encoded handle names, opened O_PATH through `mount_fd` (any
// fd on its filesystem): EXDEV when the handle is of another filesystem (its
// uuid), EINVAL when it is not a handle; needs CAP_DAC_READ_SEARCH (EPERM).
Result<UniqueFd> open_origin(std::string_view handle, int mount_fd);
// The index entry name of an encoded handle: its bytes in lower-case hex.
std::string index_name(std::string_view handle);
// The nlink xattr: the link count of the overlay file relative to the upper
// inode's ("U+1": one more than the upper inode has) or, during the kernel's
// own copy-up, to the lower's ("L-1"). The kernel's format.
std::string nlink_value(int upper_diff);
struct NlinkDiff {
  bool lower;  // relative to the lower inode
  int diff;
};
std::optional<NlinkDiff> parse_nlink(std::string_view value);

// ---------------------------------------------------------------- whiteouts

enum class Whiteout {
  kNone,       // a real entry
  kDevice,     // a character device 0:0: the kernel's whiteout
  kXattr,      // a zero-size regular file with the whiteout xattr (rootless)
  kOciName,    // "<kWhiteoutPrefix>NAME": removes NAME below (tar, lower layer)
  kOciOpaque,  // kOpaqueMarker: its directory is opaque (tar, lower layer)
};

// What the object (dirfd, name) with stat `st` is: kDevice, kXattr or kNone.
// Its name is not looked at: in an upper directory ".wh.x" is a real file.
Whiteout classify(int dirfd, const char* name, const struct stat& st);
// What a name in a tar or a lower layer is: kOciName, kOciOpaque or kNone.
Whiteout classify_name(std::string_view name);
inline bool is_whiteout(int dirfd, const char* name, const struct stat& st) {
  return classify(dirfd, name, st) != Whiteout::kNone;
}
// Whether a lower layer's directory `dirfd` holds the OCI whiteout of `name`.
bool has_oci_whiteout(int dirfd, std::string_view name);

// ---------------------------------------------------------------- directories

// A directory's marks, either namespace: opaque ("y", or the OCI marker,
// which fuse-overlayfs honours in the upper layer too), may hold xattr
// whiteouts ("x"), and its redirect (the kernel's redirect_dir), checked
// against hostile values: empty if none.
struct DirMarks {
  bool opaque = false;
  bool xwhiteouts = false;
  std::string redirect;
};
// `fd` may be O_PATH.
DirMarks read_dir_marks(int fd);
// Just the opaque mark ("y") of directory fd, either namespace.
bool is_opaque(int fd);

// ---------------------------------------------------------------- metadata-only files

// Whether a file with stat `st` can be a metadata-only copy (the kernel's
// metacopy): a regular file of at most one block (its xattrs), which one
// holding all of its data of more than a block never is. Cheap: it decides
// whether is_metacopy is worth a getxattr.
inline bool may_be_metacopy(const struct stat& st) {
  return S_ISREG(st.st_mode) && st.st_size > 0 && st.st_blocks <= 8;
}
// Whether (dirfd, name) carries the metacopy marker, in either namespace
// (its value is empty, or the kernel's versioned struct with a digest).
bool is_metacopy(int dirfd, const char* name);
// The redirect of (dirfd, name), either namespace, checked as a directory's
// is; nullopt if it has none (or an unusable one).
std::optional<std::string> file_redirect(int dirfd, const char* name);

}  // namespace layer::format
