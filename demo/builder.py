"""Builds one demo project through the services, so its data carries the history real work would, then
spreads that history over the weeks before today (demo.history)."""

from __future__ import annotations

import datetime
import random
from decimal import Decimal

from django.contrib.auth.models import User
from django.utils import timezone

from demo.data import (
    ESTIMATES_HOURS,
    PLANNING_HISTORY_DAYS,
    STATUS_PROFILES,
    TRANSITION_PATHS,
    URGENT_WORDS,
    DemoProject,
    Node,
    Priority,
    Role,
    Status,
)
from demo.history import Window, history_plan, history_write
from projects.models import Membership, Project
from projects.services import membership_set, project_create
from tasks.models import Task
from tasks.services import Source, task_assign, task_create, task_dependency_add, task_transition


class ProjectBuilder:
    """One demo project: its tasks' final states are planned first, then replayed through the services."""

    def __init__(self, *, spec: DemoProject, users: dict[str, User], rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.today = timezone.localdate()
        self.start = self.today + datetime.timedelta(days=spec.start_offset)
        self.target = self.today + datetime.timedelta(days=spec.target_offset)
        owner = next(username for username, role in spec.members.items() if role == Role.OWNER)
        self.owner = users[owner]
        self.leads = [users[name] for name, role in spec.members.items() if role in Membership.ADMIN_ROLES]
        self.writers = [users[name] for name, role in spec.members.items() if role in Membership.WRITE_ROLES]
        self.users = users
        self.nodes = self._plan()

    def build(self) -> Project:
        """Create the project, its members and its tasks; return the project."""
        spec = self.spec
        project = project_create(
            name=spec.name,
            key=spec.key,
            owner=self.owner,
            description=spec.description,
            status=spec.status,
            start_date=self.start,
            target_date=self.target,
        )
        for username, role in spec.members.items():
            if self.users[username] != self.owner:
                membership_set(project=project, user=self.users[username], role=role)
        tasks, paths = self._build_tasks(project)
        window = self._history_window()
        histories = history_plan(nodes=self.nodes, paths=paths, window=window, rng=self.rng)
        history_write(project=project, tasks=tasks, histories=histories, window=window)
        return project

    def _history_window(self) -> Window:
        """The days the project's work happened: from its start to today, or to its target date once it
        is completed; a project still being planned has filed its tasks over the last weeks."""
        start, end = self.start, self.today
        if self.spec.status == Project.Status.PLANNING:
            start = self.today - datetime.timedelta(days=PLANNING_HISTORY_DAYS)
        elif self.target < self.today:
            end = self.target
        return Window(start=start, end=end, now=timezone.now())

    # --- Planning: decide every task's final state before touching the database ----------------------

    def _plan(self) -> list[Node]:
        nodes: list[Node] = []
        for entry in self.spec.tasks:
            if isinstance(entry, str):
                nodes.append(Node(title=entry))
                continue
            title, subtasks = entry
            epic = len(nodes)
            nodes.append(Node(title=title))
            for subtask in subtasks:
                nodes[epic].children.append(len(nodes))
                nodes.append(Node(title=subtask, parent=epic))
        leaves = [index for index, node in enumerate(nodes) if not node.is_epic]
        for index, status in zip(leaves, self._status_plan(len(leaves)), strict=True):
            nodes[index].status = status
        for node in nodes:
            if node.is_epic:
                node.status = _epic_status([nodes[child].status for child in node.children])
        self._plan_dependencies(nodes, leaves)
        return nodes

    def _status_plan(self, count: int) -> list[str]:
        weights = STATUS_PROFILES[self.spec.status]
        # At least one task per status of the profile, so every status shows up in the portfolio.
        counts = {status: max(1, int(share * count)) for status, share in weights.items()}
        dominant = max(weights, key=weights.__getitem__)
        counts[dominant] += count - sum(counts.values())
        plan = [status for status in weights if status != Status.CANCELLED for _ in range(counts[status])]
        # A little disorder: neighbours in the backlog do not finish in exactly the order they were filed.
        for _ in range(count // 4):
            position = self.rng.randrange(len(plan) - 1)
            plan[position], plan[position + 1] = plan[position + 1], plan[position]
        for _ in range(counts.get(Status.CANCELLED, 0)):
            plan.insert(self.rng.randrange(len(plan) + 1), Status.CANCELLED)
        return plan

    def _plan_dependencies(self, nodes: list[Node], leaves: list[int]) -> None:
        # A task only ever waits on an earlier one, so the graph cannot have a cycle; and a done task only
        # on closed ones, so it can be closed after them.
        for position, index in enumerate(leaves[1:], start=1):
            if self.rng.random() >= 0.35:
                continue
            node = nodes[index]
            candidates = [
                earlier
                for earlier in leaves[max(0, position - 6) : position]
                if node.status != Status.DONE or nodes[earlier].status in Task.CLOSED_STATUSES
            ]
            wanted = 2 if self.rng.random() < 0.3 else 1
            node.depends_on = sorted(self.rng.sample(candidates, min(wanted, len(candidates))))

    # --- Building: replay the plan through the services ----------------------------------------------

    def _build_tasks(self, project: Project) -> tuple[list[Task], list[list[str]]]:
        """Create the tasks, their dependencies and their status changes; return the tasks and the status
        path each one went through."""
        tasks: list[Task] = []
        for index, node in enumerate(self.nodes):
            tasks.append(self._create(project, index, node, tasks))
        for node, task in zip(self.nodes, tasks, strict=True):
            for dependency in node.depends_on:
                task_dependency_add(
                    task=task, depends_on=tasks[dependency], source=Source.BATCH, actor=task.reporter
                )
        # Creation order is also dependency order (a task waits only on earlier ones), so each task's
        # dependencies are closed before it is.
        paths: list[list[str]] = []
        for node, task in zip(self.nodes, tasks, strict=True):
            path = TRANSITION_PATHS[node.status]
            if node.is_epic and node.status == Status.DONE:
                path = [Status.IN_PROGRESS, Status.DONE]  # epics are not reviewed, their subtasks are
            elif node.status == Status.DONE and self.rng.random() < 0.2:
                path = [Status.IN_PROGRESS, Status.DONE]  # small fixes merged without a formal review
            actor = task.assignee or task.reporter
            for status in path:
                task_transition(task=task, status=status, source=Source.BATCH, actor=actor)
            paths.append(list(path))
        return tasks, paths

    def _create(self, project: Project, index: int, node: Node, tasks: list[Task]) -> Task:
        reporter = self.rng.choice(self.leads)
        task = task_create(
            project=project,
            title=node.title,
            source=Source.BATCH,
            actor=reporter,
            status=Status.BACKLOG if node.status == Status.BACKLOG else Status.TODO,
            priority=self._priority(node),
            due_date=self._due_date(index, node),
            estimate_hours=self._estimate(node),
            parent=tasks[node.parent] if node.parent is not None else None,
        )
        assignee = self._assignee(node)
        if assignee is not None:
            task_assign(task=task, assignee=assignee, source=Source.BATCH, actor=reporter)
        return task

    def _priority(self, node: Node) -> int:
        if any(word in node.title.lower() for word in URGENT_WORDS):
            return self.rng.choice([Priority.HIGH, Priority.CRITICAL])
        return self.rng.choices(
            [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL], weights=[25, 45, 22, 8]
        )[0]

    def _due_date(self, index: int, node: Node) -> datetime.date | None:
        if node.status == Status.BACKLOG and self.rng.random() < 0.6:
            return None
        # Due dates follow the plan: earlier tasks fall due earlier in the project's span, so the tasks
        # active today are due around today and some open ones are already overdue.
        nominal = self.start + (self.target - self.start) * (index / len(self.nodes))
        due = nominal + datetime.timedelta(days=self.rng.randint(-7, 10))
        return min(max(due, self.start), self.target)

    def _estimate(self, node: Node) -> Decimal | None:
        if node.is_epic or (node.status == Status.BACKLOG and self.rng.random() < 0.5):
            return None
        return Decimal(self.rng.choice(ESTIMATES_HOURS))

    def _assignee(self, node: Node) -> User | None:
        if node.is_epic:
            return self.rng.choice(self.leads)
        chances: dict[str, float] = {Status.BACKLOG: 0.15, Status.TODO: 0.7, Status.CANCELLED: 0.3}
        chance = chances.get(node.status, 1.0)
        return self.rng.choice(self.writers) if self.rng.random() < chance else None


def _epic_status(children: list[str]) -> str:
    """An epic's status, read from its subtasks' statuses."""
    open_children = [status for status in children if status not in Task.CLOSED_STATUSES]
    if not open_children:
        return Status.CANCELLED if all(status == Status.CANCELLED for status in children) else Status.DONE
    if len(open_children) < len(children) or any(
        status in (Status.IN_PROGRESS, Status.IN_REVIEW) for status in open_children
    ):
        return Status.IN_PROGRESS
    return Status.TODO if Status.TODO in open_children else Status.BACKLOG
