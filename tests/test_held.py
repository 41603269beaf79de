"""Names held on this machine over a listing (view/held.py): what the view is told is held
is what it shows, and a node taken over by another name never loses that name."""

from __future__ import annotations

from assetfs.providers.base import Entry
from assetfs.view.held import Held
from assetfs.view.node import Node


def _tree() -> tuple[Node, Node, Node]:
    folder = Node(2, "folder", Node(1, "", None, None, Entry("", "", True)), None, Entry("folder", "f", True))
    other = Node(3, "other", folder.parent, None, Entry("other", "o", True))
    file = Node(4, "a.png", folder, None, Entry("a.png", "asset/1/content", False))
    folder.children = {"a.png": file}
    return folder, other, file


def test_a_held_node_shows_under_its_name_until_let_go():
    held, (folder, _, file) = Held(), _tree()
    assert dict(held.held_in(folder)) == {}
    held.hold(file)
    assert dict(held.held_in(folder)) == {"a.png": file}
    held.let_go(file)
    assert dict(held.held_in(folder)) == {} and file.local is None


def test_letting_go_of_a_node_leaves_a_name_another_holds_or_hides():
    held, (folder, _, file) = Held(), _tree()
    held.hold(file)
    held.hide(folder, "a.png")
    held.let_go(file)
    assert dict(held.held_in(folder)) == {"a.png": None}
    held.unhide(folder, "a.png")
    assert dict(held.held_in(folder)) == {}


def test_unhiding_leaves_a_held_node_held():
    held, (folder, _, file) = Held(), _tree()
    held.hold(file)
    held.unhide(folder, "a.png")
    assert dict(held.held_in(folder)) == {"a.png": file}


def test_a_moved_node_frees_its_old_name_and_holds_its_new_one():
    held, (folder, other, file) = Held(), _tree()
    held.hold(file)
    held.move(file, other, "b.png", Entry("b.png", "local:1", False))
    assert dict(held.held_in(folder)) == {} and dict(held.held_in(other)) == {"b.png": file}
    assert (file.name, file.parent, file.entry.key, file.path) == ("b.png", other, "local:1", "/other/b.png")


def test_a_file_set_aside_hides_its_name_and_put_back_shows_it_again():
    held, (folder, _, file) = Held(), _tree()
    asset, listed = Entry("a", "asset/1", True), file.entry
    file.asset = asset
    held.set_aside(file, "a.png~", Entry("a.png~", "backup:asset/1/content", False))
    assert dict(held.held_in(folder)) == {"a.png": None, "a.png~": file}
    assert folder.children == {} and file.asset is None and file.name == "a.png~"
    held.put_back(file, "a.png", asset, listed)
    assert dict(held.held_in(folder)) == {} and folder.children == {"a.png": file}
    assert (file.name, file.asset, file.entry) == ("a.png", asset, listed)
