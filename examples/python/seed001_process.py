# Seed 001, "创建并开启子进程": a function target and a Process subclass.
# The import is the one change (sleeps of 0.1-0.4 s instead of 1-4 s).
import time
import random
from shmring import Process


def piao(name):
    print('%s piaoing' % name, flush=True)
    time.sleep(random.randrange(1, 5) / 10)
    print('%s piao end' % name, flush=True)


class Piao(Process):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def run(self):  # 此处要定义一个方法,且方法名一定要交run
        print('%s piaoing' % self.name, flush=True)
        time.sleep(random.randrange(1, 5) / 10)
        print('%s piao end' % self.name, flush=True)


if __name__ == '__main__':
    # 实例化得到对象
    p1 = Process(target=piao, args=('egon',))  # 必须加,('egon',) 表示元组否则与args='egon'一样
    p2 = Piao('alex')  # 实例化传参数和第一种直接用Process类的不同
    # 调用对象下的方法,开启进程
    p1.start()
    p2.start()  # start会自动调用run
    print('主', flush=True)  # 运行至此父进程结束了,但子进程仍然在运行,因为运行完全独立
