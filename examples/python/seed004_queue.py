# Seed 004, "Queue": a queue of two, two gets, and a third get that waits
# 3 s and raises queue.Empty, as in the seed (the script ends with that
# traceback there too). The import is the one change.
from shmring import Queue
q = Queue(2)  # 创建队列 并且同时只能存储2个元素
q.put(1)
q.put(2)
# q.put(3,block=True,timeout=3) # 默认是阻塞的 当容器中没有位置了就阻塞 直到有人从里面取走元素为止
# block:是否阻塞,默认是True,如果为False就不会阻塞,但是满了会报错
# timeout:阻塞等待的时间,超出就不阻塞
print(q.get())
print(q.get())
print(q.get(block=True, timeout=3))
