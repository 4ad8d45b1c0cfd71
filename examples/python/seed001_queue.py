# Seed 001, "队列的使用": put, get, full, empty. The import is the one change.
from shmring import Process, Queue

q = Queue(3)

# put ,get ,put_nowait,get_nowait,full,empty
q.put(1)
q.put(2)
q.put(3)
print(q.full())  # 满了
# q.put(4) #再放就阻塞住了

print(q.get())
print(q.get())
print(q.get())
print(q.empty())  # 空了
# print(q.get()) #再取就阻塞住了
