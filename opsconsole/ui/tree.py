"""The live cluster tree, updated in place from snapshot diffs.

An index id -> TreeNode is kept; each snapshot adds, relabels, moves and
removes only what changed (plus the ancestors whose counts changed), so the
cursor and every expanded branch stay where the operator left them.
"""
from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from .. import kinds, present
from ..model import (
    ROOT_HOSTS,
    ROOT_PROXY,
    ROOT_SERVICES,
    ROOT_UNPLACED,
    Entity,
    Snapshot,
    diff,
)

GROUPS = (ROOT_HOSTS, ROOT_UNPLACED, ROOT_SERVICES, ROOT_PROXY)
OPTIONAL = frozenset({ROOT_UNPLACED})    # shown only while something is in it
Style = Callable[[list[present.Piece]], Text]
SEARCHED_FIELDS = ("role", "state", "availability", "status", "admin", "mode", "host")


def _haystack(entity: Entity, snap: Snapshot) -> str:
    """What the filter looks in: the row as shown, its id, and the words its fields hold
    (a leader is also a "manager", a drained node "drain")."""
    words = [present.plain(kinds.label(entity, snap)), entity.id]
    words += [str(getattr(entity, f)) for f in SEARCHED_FIELDS if getattr(entity, f, "")]
    return " ".join(words).lower()


class ClusterTree(Tree[str]):
    """Tree whose node data is the entity id (or a group id)."""

    # The help promises ← → to fold and unfold; Textual's Tree binds neither.
    BINDINGS = [Binding("left", "fold", "Fold", show=False),
                Binding("right", "unfold", "Unfold", show=False)]

    def __init__(self, style: Style, **kwargs) -> None:
        super().__init__("cluster", data="root", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self.style_pieces = style
        self.index: dict[str, TreeNode[str]] = {}
        self.snapshot = Snapshot()
        self.filter_text = ""
        # before a filter: which branches were open, and the selection (esc restores them)
        self._unfiltered: tuple[dict[str, bool], str | None] | None = None
        for group in GROUPS:
            if group not in OPTIONAL:
                self._ensure_group(group)

    # -- what should be shown --------------------------------------------------
    def _wanted(self, snap: Snapshot) -> set[str]:
        """Ids shown: everything, or with a filter, the matches and their ancestors."""
        ids = {e.id for e in snap.entities() if kinds.shown(e)}
        if not self.filter_text:
            return ids
        needle = self.filter_text.lower()
        keep: set[str] = set()
        for entity_id in ids:
            entity = snap.by_id[entity_id]
            if needle in _haystack(entity, snap):
                node_id = entity_id
                while node_id in ids and node_id not in keep:
                    keep.add(node_id)
                    node_id = kinds.parent_id(snap, snap.by_id[node_id])
        return keep

    def _parent_of(self, snap: Snapshot, entity_id: str) -> str:
        return kinds.parent_id(snap, snap.by_id[entity_id])

    # -- applying a snapshot -----------------------------------------------------
    def show(self, snap: Snapshot) -> None:
        """Bring the tree to `snap`, touching only what changed."""
        old = self.snapshot
        change = diff(old, snap)
        self.snapshot = snap
        cursor = self.cursor_node
        # where the cursor goes if its entity vanishes: the nearest ancestor that stays
        fallback = [cursor.data] if cursor is not None and cursor.data else []
        while fallback and fallback[-1] in old.by_id:
            fallback.append(kinds.parent_id(old, old.by_id[fallback[-1]]))
        wanted = self._wanted(snap)

        dirty: set[str] = set()
        for entity_id in (*change.added, *change.changed, *change.removed):
            for s in (old, snap):
                dirty |= self._affected(s, entity_id)

        # removals (and nodes now filtered out), deepest first so parents go last
        emptied: list[TreeNode[str]] = []     # may have no children left: no expander
        for entity_id in [i for i in self.index if i not in GROUPS and i not in wanted]:
            node = self.index.pop(entity_id, None)
            if node is not None and node.tree is self:
                self._drop_index(node)
                if node.parent is not None:
                    emptied.append(node.parent)
                node.remove()
        # additions and moves (only what is new here or changed), parents before children
        todo = {i for i in wanted if i not in self.index}
        todo.update(i for i in change.changed if i in wanted)
        for entity_id in sorted(todo, key=lambda i: (self._depth(snap, i),
                                                     kinds.sort_key(snap, i))):
            parent_id = self._parent_of(snap, entity_id)
            node = self.index.get(entity_id)
            if node is not None and node.parent is not None and node.parent.data == parent_id:
                continue
            if parent_id in OPTIONAL:
                self._ensure_group(parent_id)
            parent = self.index.get(parent_id)
            if parent is None:
                continue
            if node is not None:       # moved: a task rescheduled onto another node
                self._drop_index(node)
                if node.parent is not None:
                    emptied.append(node.parent)
                node.remove()
            self.index[entity_id] = self._insert(parent, entity_id, snap)
            dirty.discard(entity_id)
        for entity_id in dirty:
            node = self.index.get(entity_id)
            entity = snap.by_id.get(entity_id)
            if node is not None and entity is not None:
                node.set_label(self._label(entity, snap))
        for node in emptied:
            if node.data not in GROUPS and not node.children:
                node.allow_expand = False
        self._relabel_groups(snap)
        target = next((self.index[i] for i in fallback if i in self.index), None)
        if target is not self.cursor_node and (target is not None or cursor is not None):
            _ = self._tree_lines    # lines are stale after changes: rebuild, then move
            self.move_cursor(target)     # None: nothing of its branch is left (filtered)

    def relabel_all(self) -> None:
        """After a theme change every label is drawn again in the new colours."""
        for entity_id, node in self.index.items():
            entity = self.snapshot.by_id.get(entity_id)
            if entity is not None:
                node.set_label(self._label(entity, self.snapshot))
        self._relabel_groups(self.snapshot)

    def set_filter(self, text: str) -> None:
        """Show only what matches `text` (and its ancestors), all unfolded. The folds and
        the selection from before the filter come back when it is cleared."""
        text = text.strip()
        if text and self._unfiltered is None:
            self._unfiltered = ({i: n.is_expanded for i, n in self.index.items()
                                 if n.allow_expand}, self.selected_id)
        self.filter_text = text
        self.show(self.snapshot)
        if self.filter_text:
            for node in list(self.index.values()):
                if node.allow_expand:
                    node.expand()
        elif self._unfiltered is not None:
            (folds, selected), self._unfiltered = self._unfiltered, None
            for entity_id, expanded in folds.items():
                folded = self.index.get(entity_id)
                if folded is not None and folded.allow_expand:
                    folded.expand() if expanded else folded.collapse()
            if selected is not None:
                self.select_id(selected)

    # -- helpers -----------------------------------------------------------------
    def _affected(self, snap: Snapshot, entity_id: str) -> set[str]:
        """The entity and whatever shows a count derived from it."""
        entity = snap.by_id.get(entity_id)
        if entity is None:
            return set()
        out = {entity_id, *kinds.kind_of(entity).counts(entity)}
        node_id = entity_id
        while node_id not in GROUPS and node_id in snap.by_id:
            node_id = kinds.parent_id(snap, snap.by_id[node_id])
            out.add(node_id)
        return out

    def _depth(self, snap: Snapshot, entity_id: str) -> int:
        depth = 0
        while entity_id not in GROUPS and entity_id in snap.by_id:
            entity_id = kinds.parent_id(snap, snap.by_id[entity_id])
            depth += 1
        return depth

    def _ensure_group(self, group: str) -> None:
        if group not in self.index:
            later = [self.index[g] for g in GROUPS[GROUPS.index(group) + 1:] if g in self.index]
            label = self.style_pieces(present.group_label(group, self.snapshot))
            self.index[group] = self.root.add(label, data=group, expand=True, before=later[0]) \
                if later else self.root.add(label, data=group, expand=True)

    def _relabel_groups(self, snap: Snapshot) -> None:
        for group in [g for g in GROUPS if g in OPTIONAL and g in self.index]:
            if not self.index[group].children:
                self.index.pop(group).remove()
        for group in [g for g in GROUPS if g in self.index]:
            node = self.index[group]
            count = len(node.children)
            node.set_label(self.style_pieces(present.group_label(group, snap) + [
                (f"  {count}", "muted")]))

    def _label(self, entity: Entity, snap: Snapshot) -> Text:
        return self.style_pieces(kinds.label(entity, snap))

    def _insert(self, parent: TreeNode[str], entity_id: str, snap: Snapshot) -> TreeNode[str]:
        key = kinds.sort_key(snap, entity_id)
        children = parent.children
        if not children or kinds.sort_key(snap, children[-1].data or "") < key:
            before = None        # the common case, and all of the first fill
        else:
            before = next((c for c in children if kinds.sort_key(snap, c.data or "") > key), None)
        entity = snap.by_id[entity_id]
        expand = kinds.kind_of(entity).expanded
        label = self._label(entity, snap)
        if not parent.allow_expand:
            parent.allow_expand = True
        # a leaf until something is added under it: no expander that opens on nothing
        return parent.add(label, data=entity_id, before=before, expand=expand,
                          allow_expand=False)

    def render_label(self, node: TreeNode[str], base_style, style) -> Text:
        """A leaf's label starts where its siblings' do, after their expander."""
        text = super().render_label(node, base_style, style)
        return text if node.allow_expand else Text.assemble(" " * len(self.ICON_NODE), text)

    def _drop_index(self, node: TreeNode[str]) -> None:
        """Forget a node and its whole subtree (they go with it)."""
        stack = [node]
        while stack:
            n = stack.pop()
            if n.data is not None and self.index.get(n.data) is n:
                del self.index[n.data]
            stack.extend(n.children)

    def action_fold(self) -> None:
        """Fold the branch under the cursor; on a folded one or a leaf, go to its parent."""
        node = self.cursor_node
        if node is not None and node.is_expanded and node.children:
            node.collapse()
        else:
            self.action_cursor_parent()

    def action_unfold(self) -> None:
        node = self.cursor_node
        if node is not None and not node.is_expanded:
            node.expand()

    @property
    def selected_id(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def select_id(self, entity_id: str) -> bool:
        node = self.index.get(entity_id)
        if node is None:
            return False
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        # node.line is stale after any change until the lines are rebuilt (at the
        # next render): rebuild now, or the cursor lands on whatever line it was
        _ = self._tree_lines
        self.move_cursor(node)
        return True
